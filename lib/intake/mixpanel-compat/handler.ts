import type { StageConfig } from "../../config/stage.js";
import { ConfigError, describeError } from "../../util/errors.js";
import { tokenMatches } from "../auth.js";
import { correlationIdFor, enqueueMapped, type HttpRequest, type IntakeDeps, type IntakeResult } from "../process.js";
import { LONE_SURROGATES_METRIC } from "../text-metrics.js";
import { count } from "../../observability/telemetry.js";
import { type CompatAnswer, refusal, writeAnswer } from "./answers.js";
import { corsFor, preflightHeaders } from "./cors.js";
import { MAX_DECOMPRESSED_BYTES, decodeCompatRequest, queryParams } from "./decode.js";
import { type CompatEndpoint, fieldOf, ipFlagDefault, mapCompatRecord, sentInsertId } from "./records.js";

/**
 * Mixpanel's own ingestion endpoints on the relay: an official SDK pointed
 * at the relay (`api_host`, `host`, `serverURL`) gets the answers it expects, and its
 * records go through the same mappers, rules, queue and rejected store as /v1/*.
 */
export interface CompatHttpRequest extends HttpRequest {
  /** API Gateway's rawQueryString: keeps a raw `+` that parsed parameters may have turned into a space. */
  readonly rawQuery?: string;
  /** API Gateway's requestContext.http.sourceIp. */
  readonly sourceIp?: string;
}

export const COMPAT_ENDPOINTS: readonly CompatEndpoint[] = ["track", "engage", "groups", "import"];

/** `/track`, `/track/` (the browser and Swift add the slash), under `path_prefix`; undefined when not a compat route. */
export function matchCompatEndpoint(path: string, config: StageConfig): CompatEndpoint | undefined {
  const compat = config.mixpanel_compat;
  if (!compat || !path.startsWith(`${compat.path_prefix}/`)) return undefined;
  const rest = path.slice(compat.path_prefix.length + 1).replace(/\/$/, "");
  return COMPAT_ENDPOINTS.find((endpoint) => endpoint === rest);
}

/** Source name on the envelope and in the rejected store. */
export const compatSource = (endpoint: CompatEndpoint) => `mixpanel-${endpoint}`;

/**
 * /import auth: `Authorization: Basic base64(<intake token>:)` (what the Node and Python SDKs
 * send for their `secret`, docs/vendors/mixpanel-wire.md §3), or `Bearer <intake token>`.
 */
export function importCredential(header: string | undefined): string | undefined {
  if (!header) return undefined;
  const match = /^\s*(basic|bearer)\s+(\S+)\s*$/i.exec(header);
  if (!match?.[2]) return undefined;
  if (match[1]?.toLowerCase() === "bearer") return match[2];
  const decoded = Buffer.from(match[2], "base64").toString("utf8");
  const user = decoded.split(":")[0];
  return user === undefined || user === "" ? undefined : user;
}

export async function handleMixpanelCompat(request: CompatHttpRequest, endpoint: CompatEndpoint, deps: IntakeDeps): Promise<IntakeResult> {
  const correlationId = correlationIdFor(request, deps.newCorrelationId);
  const source = compatSource(endpoint);
  const compat = deps.config.mixpanel_compat;
  const baseHeaders = { "x-correlation-id": correlationId };
  if (!compat) return { correlationId, response: refusal(404, `no route ${request.path}`, baseHeaders) };

  const cors = corsFor(request.headers.origin, compat);
  if (!cors.allowed) {
    return { correlationId, response: refusal(403, `origin ${cors.origin} is not in mixpanel_compat.cors_origins`, baseHeaders) };
  }
  const headers = { ...baseHeaders, ...cors.headers };
  if (request.method === "OPTIONS") {
    return {
      correlationId,
      response: { statusCode: 204, headers: { ...headers, ...preflightHeaders(request.headers["access-control-request-headers"]) }, body: "" },
    };
  }
  if (request.method !== "GET" && request.method !== "POST") {
    return { correlationId, response: refusal(405, "use GET or POST", { ...headers, allow: "GET, POST, OPTIONS" }) };
  }

  const queryFields = queryParams(request.rawQuery, request.query);
  const verboseQuery = queryFields.ok ? queryFields.fields.values.get("verbose") : new URLSearchParams(request.rawQuery).get("verbose");
  const answer = (fields: Omit<CompatAnswer, "style" | "verbose"> & Partial<Pick<CompatAnswer, "style" | "verbose">>) =>
    writeAnswer({ style: "legacy", verbose: verboseQuery === "1", ...fields }, headers);

  if (endpoint === "import") {
    let accepted: readonly string[];
    try {
      accepted = await deps.tokens();
    } catch (error) {
      const what = error instanceof ConfigError ? "intake tokens are not configured" : "secret store unavailable";
      return { correlationId, cause: `intake token store: ${describeError(error)}`, response: answer({ status: 503, accepted: 0, success: false, error: `cannot verify credentials right now: ${what}` }) };
    }
    const presented = importCredential(request.headers.authorization);
    if (!presented || !tokenMatches(presented, accepted)) {
      return { correlationId, response: refusal(401, "/import needs Authorization: Basic base64(<intake token>:) or Bearer <intake token>", headers) };
    }
  }

  if (!queryFields.ok) {
    return { correlationId, response: answer({ status: queryFields.status, accepted: 0, success: false, error: `${queryFields.code}: ${queryFields.message}` }) };
  }
  const decoded = decodeCompatRequest({
    headers: request.headers,
    query: queryFields.fields,
    body: request.body,
    maxBodyBytes: deps.maxBodyBytes,
    maxDecompressedBytes: MAX_DECOMPRESSED_BYTES,
  });
  const importJson = (style: string) => endpoint === "import" && style === "json";
  if (!decoded.ok) {
    return {
      correlationId,
      response: answer({
        status: decoded.status,
        style: decoded.style,
        verbose: decoded.flags.verbose,
        accepted: 0,
        success: false,
        error: `${decoded.code}: ${decoded.message}`,
        ...(importJson(decoded.style) ? { failed: [] } : {}),
      }),
    };
  }

  const { flags, records, style } = decoded;
  count(LONE_SURROGATES_METRIC, decoded.loneSurrogates);
  const nowMs = deps.nowMs();
  const clientIp = compat.client_ip && (flags.ip ?? ipFlagDefault(endpoint)) === "1" ? request.sourceIp : undefined;
  const ctx = { nowMs, config: deps.config, projectTokens: new Set(compat.project_tokens), clientIp };
  const items = records.map((record, index) => mapCompatRecord(endpoint, record, index, ctx));

  const enqueued = await enqueueMapped(items, source, correlationId, deps);
  if (!enqueued.ok) {
    // A 5xx makes the browser batcher keep the batch and retry (docs/vendors/mixpanel-wire.md §4.4).
    return {
      correlationId,
      cause: enqueued.cause,
      response: answer({ status: 503, style, verbose: flags.verbose, accepted: 0, success: false, error: "could not queue the batch; retry later", ...(importJson(style) ? { failed: [] } : {}) }),
    };
  }
  const { accepted } = enqueued;
  const rejections = enqueued.rejections.filter((item) => !item.dropped);
  const dropped = enqueued.rejections.length - rejections.length;
  const summary = { accepted, rejected: rejections.length, dropped };
  const error =
    rejections.length === 0
      ? null
      : `${rejections.length} of ${records.length} record(s) rejected: ${rejections
          .slice(0, 5)
          .map((item) => `#${item.index} ${item.code}: ${item.reason}`)
          .join("; ")}${rejections.length > 5 ? "; …" : ""}`;
  const failed = rejections.map((item) => {
    const insertId = sentInsertId(item.payload);
    return { index: item.index, ...(insertId !== undefined ? { insert_id: insertId } : {}), field: fieldOf(item), message: `${item.code}: ${item.reason}` };
  });
  const strictFailure = importJson(style) && flags.strict && rejections.length > 0;
  return {
    correlationId,
    source,
    summary,
    insertIdHashes: enqueued.insertIdHashes,
    response: answer({
      status: strictFailure ? 400 : 200,
      style,
      verbose: flags.verbose,
      accepted,
      // Mixpanel's `1` means at least one record was valid (docs/vendors/mixpanel-wire.md §3); a batch of
      // only skipped identity events is valid too (Mixpanel takes and ignores them).
      success: accepted > 0 || (dropped > 0 && rejections.length === 0),
      error: strictFailure ? "some data points in the request failed validation" : error,
      ...(importJson(style) ? { failed } : {}),
    }),
  };
}
