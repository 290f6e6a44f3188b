import { AwsClient } from "aws4fetch";
import { ConfigError } from "../errors.js";
import { parseJsonOrUndefined } from "../util/json.js";

/**
 * The one path for the few AWS calls the functions make at run time (SQS SendMessage and
 * SendMessageBatch; S3 PutObject, GetObject, HeadObject, CopyObject, DeleteObject and
 * ListObjectsV2; Secrets Manager GetSecretValue): SigV4
 * signing by `aws4fetch` (~6 KB) over Node's fetch, instead of the AWS SDK v3 clients that
 * made up ~75% of every bundle and most of its import time (issue 12; README "Performance").
 *
 * Like the SDK's defaults: credentials from the environment Lambda sets
 * (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN), regional endpoints unless
 * an endpoint is configured (the local stack, tests), 3 attempts with jittered backoff on
 * network errors, 5xx, 429 and throttling codes. Unlike the SDK it never follows a
 * redirect (PROJECT standards: a 3xx on a signed request is a refusal).
 */
export interface AwsTarget {
  readonly region: string;
  /** Explicit endpoint (e.g. http://127.0.0.1:4566); absent = the service's regional endpoint. */
  readonly endpoint?: string;
}

/** An AWS error answer, named by AWS's error code like the SDK's errors (`error.name`). */
export class AwsCallError extends Error {
  constructor(
    readonly code: string,
    message: string,
    readonly status: number,
  ) {
    super(`${code}: ${message}`);
    this.name = code;
  }
}

const MAX_ATTEMPTS = 3;
const BASE_DELAY_MS = 50;
const REQUEST_TIMEOUT_MS = 10_000;
const THROTTLING_CODES = new Set([
  "Throttling",
  "ThrottlingException",
  "ThrottledException",
  "RequestThrottledException",
  "TooManyRequestsException",
  "ProvisionedThroughputExceededException",
  "RequestLimitExceeded",
  "SlowDown",
  "RequestThrottled",
  "InternalError",
  "InternalFailure",
  "ServiceUnavailable",
  "RequestTimeout",
  "RequestTimeoutException",
]);

export function regionalEndpoint(service: string, region: string): string {
  // The China partition has its own domain; every other commercial region uses amazonaws.com.
  const domain = region.startsWith("cn-") ? "amazonaws.com.cn" : "amazonaws.com";
  return `https://${service}.${region}.${domain}`;
}

function credentialsFromEnv(): { accessKeyId: string; secretAccessKey: string; sessionToken?: string } {
  const accessKeyId = process.env.AWS_ACCESS_KEY_ID;
  const secretAccessKey = process.env.AWS_SECRET_ACCESS_KEY;
  if (!accessKeyId) throw new ConfigError("environment variable AWS_ACCESS_KEY_ID is required (Lambda sets it from the function's role)");
  if (!secretAccessKey) throw new ConfigError("environment variable AWS_SECRET_ACCESS_KEY is required (Lambda sets it from the function's role)");
  const sessionToken = process.env.AWS_SESSION_TOKEN;
  return { accessKeyId, secretAccessKey, ...(sessionToken ? { sessionToken } : {}) };
}

/** AWS JSON protocols (SQS, Secrets Manager) and S3 REST name the error in one of these places. */
function errorCodeOf(response: Response, text: string): { code: string; message: string } {
  const header = response.headers.get("x-amzn-errortype") ?? response.headers.get("x-amzn-query-error");
  let code = header?.split(/[:;]/)[0] ?? "";
  let message = text.slice(0, 300);
  if (text.startsWith("{")) {
    // Not JSON: keep the text.
    const parsed = parseJsonOrUndefined(text);
    if (parsed && typeof parsed === "object") {
      if (!code && "__type" in parsed && typeof parsed.__type === "string") code = parsed.__type;
      const said = "message" in parsed ? parsed.message : "Message" in parsed ? parsed.Message : undefined;
      if (typeof said === "string") message = said;
    }
  } else {
    // S3's XML: <Error><Code>NoSuchKey</Code><Message>…</Message></Error>
    code ||= /<Code>([^<]+)<\/Code>/.exec(text)?.[1] ?? "";
    message = /<Message>([^<]*)<\/Message>/.exec(text)?.[1] ?? message;
  }
  // JSON 1.0 types may be namespaced ("com.amazonaws.sqs#QueueDoesNotExist").
  code = code.slice(code.lastIndexOf("#") + 1) || `Http${response.status}`;
  return { code, message };
}

export interface AwsResponse {
  readonly status: number;
  readonly headers: Headers;
  readonly body: Uint8Array;
}

export interface AwsCaller {
  /** Signs and sends; answers 2xx, or throws AwsCallError (AWS refused) or another Error (network). */
  call(url: string, init: { method: string; headers?: Record<string, string>; body?: string | Uint8Array }): Promise<AwsResponse>;
  readonly baseUrl: string;
}

export function createAwsCaller(service: string, target: AwsTarget, options: { timeoutMs?: number } = {}): AwsCaller {
  let client: AwsClient | undefined;
  const baseUrl = (target.endpoint ?? regionalEndpoint(service, target.region)).replace(/\/+$/, "");
  const timeoutMs = options.timeoutMs ?? REQUEST_TIMEOUT_MS;
  return {
    baseUrl,
    async call(url, init) {
      // Resolved at the first call (as the SDK does), then kept for the container's life.
      client ??= new AwsClient({ ...credentialsFromEnv(), service, region: target.region, retries: 0 });
      let lastError: unknown;
      for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
        if (attempt > 0) await new Promise((resolve) => setTimeout(resolve, Math.random() * BASE_DELAY_MS * 2 ** attempt));
        let response: Response;
        try {
          const request = await client.sign(url, {
            method: init.method,
            ...(init.headers ? { headers: init.headers } : {}),
            // fetch's types take bytes only over a plain ArrayBuffer (a Buffer may sit on a shared one).
            ...(init.body !== undefined ? { body: typeof init.body === "string" ? init.body : new Uint8Array(init.body) } : {}),
            redirect: "manual",
            signal: AbortSignal.timeout(timeoutMs),
          });
          response = await fetch(request);
        } catch (error) {
          lastError = error;
          continue;
        }
        const bytes = new Uint8Array(await response.arrayBuffer());
        if (response.status >= 200 && response.status < 300) return { status: response.status, headers: response.headers, body: bytes };
        const text = new TextDecoder().decode(bytes);
        if (response.status >= 300 && response.status < 400) {
          throw new AwsCallError("Redirect", `${service} answered ${response.status} (redirects are not followed): ${text.slice(0, 200)}`, response.status);
        }
        const { code, message } = errorCodeOf(response, text);
        lastError = new AwsCallError(code, message, response.status);
        if (!(response.status >= 500 || response.status === 429 || THROTTLING_CODES.has(code))) throw lastError;
      }
      throw lastError;
    },
  };
}

/** One AWS JSON-protocol operation (SQS: JSON 1.0, Secrets Manager: JSON 1.1). */
export async function awsJsonCall(
  caller: AwsCaller,
  jsonVersion: "1.0" | "1.1",
  target: string,
  input: unknown,
): Promise<unknown> {
  const response = await caller.call(`${caller.baseUrl}/`, {
    method: "POST",
    headers: { "content-type": `application/x-amz-json-${jsonVersion}`, "x-amz-target": target },
    body: JSON.stringify(input),
  });
  const text = new TextDecoder().decode(response.body);
  return text === "" ? {} : JSON.parse(text);
}
