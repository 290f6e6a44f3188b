import { type AwsTarget, createAwsCaller, regionalEndpoint } from "./aws-call.js";

/**
 * The S3 calls the functions make (PutObject for the rejected store, GetObject for Braze
 * Currents files), over S3's REST API. With a configured endpoint (local stack, tests) the
 * bucket goes in the path; otherwise virtual-hosted style, as the SDK does, falling back to
 * the path for bucket names with dots (they break the wildcard TLS certificate).
 */
export interface S3Api {
  putObject(bucket: string, key: string, body: string, contentType: string): Promise<void>;
  /** Throws AwsCallError with code NoSuchKey (404) when the object is gone. */
  getObject(bucket: string, key: string, versionId?: string): Promise<Uint8Array>;
}

/** RFC 3986 encoding of each key segment; `/` stays a separator. */
function encodeKey(key: string): string {
  return key
    .split("/")
    .map((segment) => encodeURIComponent(segment).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`))
    .join("/");
}

export function createS3(target: AwsTarget): S3Api {
  // A Currents file can hold 100,000 events (docs/vendors/braze-currents.md §3): give the
  // download far longer than the 10 s the small SQS and Secrets Manager calls get.
  const caller = createAwsCaller("s3", target, { timeoutMs: 120_000 });
  const objectUrl = (bucket: string, key: string): string => {
    if (target.endpoint || bucket.includes(".")) {
      const base = target.endpoint ? caller.baseUrl : regionalEndpoint("s3", target.region);
      return `${base}/${encodeURIComponent(bucket)}/${encodeKey(key)}`;
    }
    return `${regionalEndpoint(`${bucket}.s3`, target.region)}/${encodeKey(key)}`;
  };
  return {
    async putObject(bucket, key, body, contentType) {
      await caller.call(objectUrl(bucket, key), { method: "PUT", headers: { "content-type": contentType }, body });
    },
    async getObject(bucket, key, versionId) {
      const url = objectUrl(bucket, key) + (versionId ? `?versionId=${encodeURIComponent(versionId)}` : "");
      return (await caller.call(url, { method: "GET" })).body;
    },
  };
}
