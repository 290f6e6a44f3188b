import { AwsCallError, type AwsTarget } from "./aws-call.js";
import { type S3Api, encodeKey, encodeRfc3986, s3Caller } from "./s3.js";

/**
 * The bucket calls of the cohort store (lib/cohorts/store.ts) beside PutObject and GetObject:
 * HeadObject, CopyObject, DeleteObject and ListObjectsV2, over S3's REST API with the same
 * signing, retries and URLs as s3.ts. A module of their own so only the bundles that use them
 * carry them (cohort-export, webhook-delivery).
 */
export interface S3ListPage {
  readonly keys: string[];
  /** Present when S3 said the listing is truncated: pass it to the next call. */
  readonly nextContinuationToken?: string;
}

export interface S3BucketApi extends S3Api {
  /** false when S3 answers 404 (HEAD answers carry no error body, so no NoSuchKey code). */
  objectExists(bucket: string, key: string): Promise<boolean>;
  /** Server-side copy inside one bucket. */
  copyObject(bucket: string, fromKey: string, toKey: string): Promise<void>;
  deleteObject(bucket: string, key: string): Promise<void>;
  /** One page (up to 1,000 keys) of ListObjectsV2 under a prefix. */
  listObjectsV2(bucket: string, prefix: string, continuationToken?: string): Promise<S3ListPage>;
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

export function createS3Bucket(target: AwsTarget, objects: S3Api): S3BucketApi {
  const { caller, bucketUrl, objectUrl } = s3Caller(target);
  return {
    putObject: objects.putObject,
    getObject: objects.getObject,
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
