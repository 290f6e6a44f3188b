import { mapGroupUpdate } from "../../sources/groups.js";
import { mapNativeEvent } from "../../sources/native.js";
import { mapProfileUpdate } from "../../sources/profiles.js";
import type { MapContext, MappedItem, RejectedItem } from "../../sources/types.js";

/**
 * What the Mixpanel-compatible endpoints do to each record before it goes through the
 * same mappers as /v1/events, /v1/profiles and /v1/groups (rules, identity mode,
 * event_mapping, property_mapping): check and drop the payload's project token, apply
 * the SDK's `ip=1` request, and fill what Mixpanel's /track fills. Pure.
 */
export type CompatEndpoint = "track" | "engage" | "groups" | "import";

export interface CompatMapContext extends MapContext {
  /** Accepted project tokens (`mixpanel_compat.project_tokens`). */
  readonly projectTokens: ReadonlySet<string>;
  /** The client's IP when the SDK asked for geolocation and the stage allows it, else undefined. */
  readonly clientIp: string | undefined;
}

export function isRecord(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === "object" && !Array.isArray(value);
}

function tokenRejection(index: number, payload: unknown, field: string): RejectedItem {
  return {
    ok: false,
    index,
    code: "invalid_token",
    reason: `${field} is missing or is not a project token this relay accepts (mixpanel_compat.project_tokens)`,
    payload,
  };
}

function acceptsToken(token: unknown, ctx: CompatMapContext): boolean {
  return typeof token === "string" && ctx.projectTokens.has(token);
}

/**
 * /track and /import events. The payload `token` is never forwarded (the forwarder
 * authenticates itself). /track fills a missing `time` with the receive time, as
 * Mixpanel's /track does (the Node SDK's track sends none, docs/vendors/mixpanel-wire.md §5);
 * /import requires it.
 */
function mapCompatEvent(endpoint: "track" | "import", item: unknown, index: number, ctx: CompatMapContext): MappedItem {
  // A wrong shape is refused by the native mapper with its own reason.
  if (!isRecord(item) || !isRecord(item.properties)) return mapNativeEvent(item, index, ctx);
  const { token, ...properties } = item.properties;
  if (endpoint === "track" && !acceptsToken(token, ctx)) return tokenRejection(index, item, "properties.token");
  if (endpoint === "track" && (properties.time === undefined || properties.time === null)) properties.time = ctx.nowMs;
  if (ctx.clientIp !== undefined && properties.ip === undefined) properties.ip = ctx.clientIp;
  const mapped = mapNativeEvent({ ...item, properties }, index, ctx);
  // SDKs send $identify / $create_alias on identify() and alias() whatever the project's ID-merge
  // mode; under Simplified ID Merge Mixpanel ignores them (docs/vendors/mixpanel-api.md §7), so here
  // they are an expected skip (stored and counted, not an error the SDK should see), not a failure.
  if (!mapped.ok && mapped.code === IDENTITY_EVENT_SKIPPED) return { ...mapped, dropped: true };
  return mapped;
}

/** The native mapper's code for an identity event under Simplified ID Merge (lib/sources/identity.ts). */
const IDENTITY_EVENT_SKIPPED = "identity_event_requires_original_mode";

/**
 * Top-level fields mixpanel-browser adds to profile updates (docs/vendors/mixpanel-wire.md §4.2)
 * that /engage takes but the relay does not forward: under Simplified ID Merge the events
 * carry `$device_id` / `$user_id`, which is where Mixpanel links identities.
 */
const BROWSER_PROFILE_HINTS = ["$device_id", "$user_id", "$had_persisted_distinct_id"];

function mapCompatUpdate(endpoint: "engage" | "groups", item: unknown, index: number, ctx: CompatMapContext): MappedItem {
  const map = endpoint === "engage" ? mapProfileUpdate : mapGroupUpdate;
  if (!isRecord(item)) return map(item, index, ctx);
  const { $token, ...update } = item;
  if (!acceptsToken($token, ctx)) return tokenRejection(index, item, "$token");
  if (endpoint === "engage") for (const hint of BROWSER_PROFILE_HINTS) delete update[hint];
  if (ctx.clientIp !== undefined && update.$ip === undefined) update.$ip = ctx.clientIp;
  return map(update, index, ctx);
}

export function mapCompatRecord(endpoint: CompatEndpoint, item: unknown, index: number, ctx: CompatMapContext): MappedItem {
  return endpoint === "track" || endpoint === "import" ? mapCompatEvent(endpoint, item, index, ctx) : mapCompatUpdate(endpoint, item, index, ctx);
}

/** Where Mixpanel's `ip` flag defaults to 1 when absent: /engage (and /groups, its twin) (docs/vendors/mixpanel-wire.md §2). */
export function ipFlagDefault(endpoint: CompatEndpoint): string {
  return endpoint === "engage" || endpoint === "groups" ? "1" : "0";
}

/** The record's `$insert_id` as sent, for /import's failed_records. */
export function sentInsertId(payload: unknown): string | undefined {
  if (!isRecord(payload) || !isRecord(payload.properties)) return undefined;
  const id = payload.properties.$insert_id;
  return typeof id === "string" ? id : undefined;
}

const FIELD_OF_CODE: Readonly<Record<string, string>> = {
  missing_time: "properties.time",
  invalid_time: "properties.time",
  missing_distinct_id: "properties.distinct_id",
  invalid_distinct_id: "properties.distinct_id",
  banned_distinct_id: "properties.distinct_id",
  missing_event: "event",
  invalid_token: "properties.token",
};

/** The field a rejection is about, in Mixpanel's failed_records style (`properties.time`). */
export function fieldOf(rejection: RejectedItem): string {
  if (Object.hasOwn(FIELD_OF_CODE, rejection.code)) return FIELD_OF_CODE[rejection.code] ?? "event";
  const path = /^([A-Za-z0-9_$.]+):/.exec(rejection.reason)?.[1];
  return path ?? "event";
}
