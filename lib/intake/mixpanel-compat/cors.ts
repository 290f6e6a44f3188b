import type { MixpanelCompatConfig } from "../../config/mixpanel-compat.js";

/**
 * CORS for mixpanel-browser (docs/vendors/mixpanel-wire.md §4.3): its XHRs use
 * `withCredentials`, so the allowed Origin is echoed (never `*`) with
 * `Access-Control-Allow-Credentials: true`, on every answer including errors (a CORS
 * failure reads as status 0, and the batcher then drops the batch).
 */
export type CorsDecision =
  | { readonly allowed: true; readonly headers: Record<string, string> }
  | { readonly allowed: false; readonly origin: string };

export function corsFor(origin: string | undefined, config: MixpanelCompatConfig): CorsDecision {
  // Server-side SDKs send no Origin: nothing to allow.
  if (origin === undefined || origin === "") return { allowed: true, headers: {} };
  if (!config.cors_origins.includes(origin)) return { allowed: false, origin };
  return {
    allowed: true,
    headers: { "access-control-allow-origin": origin, "access-control-allow-credentials": "true", vary: "Origin" },
  };
}

/** A header-name list as browsers send it in Access-Control-Request-Headers. */
const HEADER_LIST = /^[A-Za-z0-9-]+(\s*,\s*[A-Za-z0-9-]+)*$/;

/** Preflight answer headers: the SDK's `xhr_headers` trigger a preflight, and they are allowed back. */
export function preflightHeaders(requestedHeaders: string | undefined): Record<string, string> {
  return {
    "access-control-allow-methods": "GET, POST, OPTIONS",
    ...(requestedHeaders !== undefined && HEADER_LIST.test(requestedHeaders.trim())
      ? { "access-control-allow-headers": requestedHeaders.trim() }
      : {}),
    "access-control-max-age": "600",
  };
}
