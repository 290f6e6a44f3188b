import type { HttpResponse } from "../process.js";
import type { RequestStyle } from "./decode.js";

/**
 * Replies the SDKs understand (docs/vendors/mixpanel-wire.md §3, §4.4): legacy `1`/`0`
 * (text/plain; both are also valid JSON), `{"status","error"}` with `verbose=1`, and
 * Mixpanel's /import JSON shape for JSON or NDJSON /import bodies
 * (docs/vendors/mixpanel-api.md §3). The HTTP status carries the retry meaning:
 * 200 done (even with rejected records: they are in the rejected store), 413/429/5xx
 * retried by the browser SDK, other 4xx dropped by it.
 */
export interface FailedRecord {
  readonly index: number;
  readonly insert_id?: string;
  readonly field: string;
  readonly message: string;
}

export interface CompatAnswer {
  readonly status: number;
  readonly style: RequestStyle;
  readonly verbose: boolean;
  /** Records accepted onto the queue. */
  readonly accepted: number;
  /** Why the request or some records were refused; null when everything was taken. */
  readonly error: string | null;
  /** /import JSON answers: the records that failed, by index. */
  readonly failed?: readonly FailedRecord[];
  /** Whether the request as a whole succeeded: `1` for legacy answers. */
  readonly success: boolean;
}

function respond(statusCode: number, contentType: string, body: string, headers: Record<string, string>): HttpResponse {
  return { statusCode, headers: { "content-type": contentType, ...headers }, body };
}

export function legacyBody(answer: Pick<CompatAnswer, "verbose" | "success" | "error">): { contentType: string; body: string } {
  if (answer.verbose) return { contentType: "application/json", body: JSON.stringify({ status: answer.success ? 1 : 0, error: answer.error }) };
  return { contentType: "text/plain; charset=utf-8", body: answer.success ? "1" : "0" };
}

const STATUS_TEXT: Readonly<Record<number, string>> = {
  200: "OK",
  400: "Bad Request",
  401: "Unauthorized",
  403: "Forbidden",
  405: "Method Not Allowed",
  413: "Payload Too Large",
  415: "Unsupported Media Type",
  503: "Service Unavailable",
};

export function writeAnswer(answer: CompatAnswer, headers: Record<string, string>): HttpResponse {
  if (answer.style === "json" && answer.failed !== undefined) {
    const statusText = STATUS_TEXT[answer.status] ?? "Error";
    return respond(
      answer.status,
      "application/json",
      JSON.stringify({
        code: answer.status,
        ...(answer.error !== null ? { error: answer.error } : {}),
        num_records_imported: answer.accepted,
        status: statusText,
        failed_records: answer.failed,
      }),
      headers,
    );
  }
  const { contentType, body } = legacyBody(answer);
  return respond(answer.status, contentType, body, headers);
}

/** Auth and origin refusals, in the shape Mixpanel uses for them (docs/vendors/mixpanel-wire.md §3). */
export function refusal(status: 401 | 403 | 405 | 404, error: string, headers: Record<string, string>): HttpResponse {
  return respond(status, "application/json", JSON.stringify({ error, status: "error" }), headers);
}
