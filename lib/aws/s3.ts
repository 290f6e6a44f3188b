import { AwsCallError, type AwsTarget, createAwsCaller, regionalEndpoint } from "./aws-call.js";

/**
 * The S3 calls the functions make, over S3's REST API: PutObject (rejected store, cohort
 * state), GetObject (Braze Currents files, cohort state, the erased-ids list), HeadObject,
 * CopyObject, DeleteObject and ListObjectsV2 (the cohort store's ledger and snapshots).
 * With a configured endpoint (local stack, tests) the bucket goes in the path; otherwise
 * virtual-hosted style, as the SDK does, falling back to the path for bucket names with
 * dots (they break the wildcard TLS certificate).
 */
export interface S3ListPage {
  readonly keys: string[];
  /** Present when S3 said the listing is truncated: pass it to the next call. */
  readonly nextContinuationToken?: string;
}

export interface S3Api {
  putObject(bucket: string, key: string, body: string | Uint8Array, contentType: string): Promise<void>;
  /** Throws AwsCallError with code NoSuchKey (404) when the object is gone. */
  getObject(bucket: string, key: string, versionId?: string): Promise<Uint8Array>;
  /** false when S3 answers 404 (HEAD answers carry no error body, so no NoSuchKey code). */
  objectExists(bucket: string, key: string): Promise<boolean>;
  /** Server-side copy inside one bucket. */
  copyObject(bucket: string, fromKey: string, toKey: string): Promise<void>;
  deleteObject(bucket: string, key: string): Promise<void>;
  /** One page (up to 1,000 keys) of ListObjectsV2 under a prefix. */
  listObjectsV2(bucket: string, prefix: string, continuationToken?: string): Promise<S3ListPage>;
}

/** RFC 3986 encoding of one URI component (S3 signs `!'()*` encoded too). */
function encodeRfc3986(text: string): string {
  return encodeURIComponent(text).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
}

/** Each key segment encoded; `/` stays a separator. */
function encodeKey(key: string): string {
  return key.split("/").map(encodeRfc3986).join("/");
}

const XML_ENTITIES: Record<string, string> = { amp: "&", lt: "<", gt: ">", quot: '"', apos: "'" };

/** XML text → string: the five named entities and numeric character references, nothing else. */
function xmlText(raw: string): string {
  return raw.replace(/&(#x[0-9a-fA-F]+|#[0-9]+|[a-z]+);/g, (whole, name: string) => {
    if (name.startsWith("#x")) return String.fromCodePoint(Number.parseInt(name.slice(2), 16));
    if (name.startsWith("#")) return String.fromCodePoint(Number.parseInt(name.slice(1), 10));
    const named = XML_ENTITIES[name];
    if (named === undefined) throw new Error(`S3 answered XML with an unknown entity ${whole}`);
    return named;
  });
}

/**
 * The fields of a ListObjectsV2 answer the store needs, read strictly: the root must be
 * ListBucketResult, IsTruncated must be true or false, and a truncated answer must carry its
 * NextContinuationToken (otherwise a listing would silently stop early). Keys are read only
 * inside <Contents> elements (CommonPrefixes are not requested: no delimiter is sent).
 */
export function parseListObjectsV2(xml: string): S3ListPage {
  if (!/<ListBucketResult[\s>]/.test(xml)) throw new Error("S3 ListObjectsV2 answered without a ListBucketResult");
  const truncated = /<IsTruncated>(true|false)<\/IsTruncated>/.exec(xml)?.[1];
  if (truncated === undefined) throw new Error("S3 ListObjectsV2 answered without IsTruncated");
  const keys: string[] = [];
  for (const contents of xml.matchAll(/<Contents>([\s\S]*?)<\/Contents>/g)) {
    const key = /<Key>([^<]*)<\/Key>/.exec(contents[1] ?? "")?.[1];
    if (key === undefined) throw new Error("S3 ListObjectsV2 answered a Contents element without a Key");
    keys.push(xmlText(key));
  }
  if (truncated === "false") return { keys };
  const token = /<NextContinuationToken>([^<]+)<\/NextContinuationToken>/.exec(xml)?.[1];
  if (token === undefined) throw new Error("S3 ListObjectsV2 answered IsTruncated without a NextContinuationToken");
  return { keys, nextContinuationToken: xmlText(token) };
}

export function createS3(target: AwsTarget): S3Api {
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
  const objectUrl = (bucket: string, key: string): string => `${bucketUrl(bucket)}/${encodeKey(key)}`;
  return {
    async putObject(bucket, key, body, contentType) {
      await caller.call(objectUrl(bucket, key), { method: "PUT", headers: { "content-type": contentType }, body });
    },
    async getObject(bucket, key, versionId) {
      const url = objectUrl(bucket, key) + (versionId ? `?versionId=${encodeURIComponent(versionId)}` : "");
      return (await caller.call(url, { method: "GET" })).body;
    },
    async objectExists(bucket, key) {
      try {
        await caller.call(objectUrl(bucket, key), { method: "HEAD" });
        return true;
      } catch (error) {
        if (error instanceof AwsCallError && error.status === 404) return false;
        throw error;
      }
    },
    async copyObject(bucket, fromKey, toKey) {
      const answer = await caller.call(objectUrl(bucket, toKey), {
        method: "PUT",
        headers: { "x-amz-copy-source": `/${encodeURIComponent(bucket)}/${encodeKey(fromKey)}` },
      });
      // CopyObject may answer 200 and still fail: the error is then in the body.
      const text = new TextDecoder().decode(answer.body);
      if (/<Error>/.test(text)) {
        const code = /<Code>([^<]+)<\/Code>/.exec(text)?.[1] ?? "CopyFailed";
        throw new AwsCallError(code, /<Message>([^<]*)<\/Message>/.exec(text)?.[1] ?? "CopyObject answered 200 with an error", answer.status);
      }
    },
    async deleteObject(bucket, key) {
      await caller.call(objectUrl(bucket, key), { method: "DELETE" });
    },
    async listObjectsV2(bucket, prefix, continuationToken) {
      const query = `list-type=2&prefix=${encodeRfc3986(prefix)}${continuationToken ? `&continuation-token=${encodeRfc3986(continuationToken)}` : ""}`;
      const answer = await caller.call(`${bucketUrl(bucket)}?${query}`, { method: "GET" });
      return parseListObjectsV2(new TextDecoder().decode(answer.body));
    },
  };
}
