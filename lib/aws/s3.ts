import { type AwsCaller, type AwsTarget, createAwsCaller, regionalEndpoint } from "./aws-call.js";

/**
 * The S3 calls every function may make, over S3's REST API: PutObject (rejected store),
 * GetObject (Braze Currents files, the erased-ids list). The cohort store's bucket calls
 * (HeadObject, CopyObject, DeleteObject, ListObjectsV2) are in s3-bucket.ts so they stay
 * out of the bundles that do not need them (the Currents reader sits near the 300 KB target).
 * With a configured endpoint (local stack, tests) the bucket goes in the path; otherwise
 * virtual-hosted style, as the SDK does, falling back to the path for bucket names with
 * dots (they break the wildcard TLS certificate).
 */
export interface S3Api {
  putObject(bucket: string, key: string, body: string | Uint8Array, contentType: string): Promise<void>;
  /** Throws AwsCallError with code NoSuchKey (404) when the object is gone. */
  getObject(bucket: string, key: string, versionId?: string): Promise<Uint8Array>;
}

/** RFC 3986 encoding of one URI component (S3 signs `!'()*` encoded too). */
export function encodeRfc3986(text: string): string {
  return encodeURIComponent(text).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
}

/** Each key segment encoded; `/` stays a separator. */
export function encodeKey(key: string): string {
  return key.split("/").map(encodeRfc3986).join("/");
}

/** The S3 caller and URLs of one target. */
export function s3Caller(target: AwsTarget): { caller: AwsCaller; bucketUrl(bucket: string): string; objectUrl(bucket: string, key: string): string } {
  // A Currents file can hold 100,000 events (docs/vendors/braze-currents.md §3): give the
  // download far longer than the 10 s the small SQS and Secrets Manager calls get.
  const caller = createAwsCaller("s3", target, { timeoutMs: 120_000 });
  /** The bucket's URL without a trailing slash. */
  const bucketUrl = (bucket: string): string => {
    if (target.endpoint || bucket.includes(".")) {
      const base = target.endpoint ? caller.baseUrl : regionalEndpoint("s3", target.region);
      return `${base}/${encodeURIComponent(bucket)}`;
    }
    return regionalEndpoint(`${bucket}.s3`, target.region);
  };
  return { caller, bucketUrl, objectUrl: (bucket, key) => `${bucketUrl(bucket)}/${encodeKey(key)}` };
}

export function createS3(target: AwsTarget): S3Api {
  const { caller, objectUrl } = s3Caller(target);
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
