import * as z from "../util/zod.js";
import { ValidationError } from "../util/errors.js";
import { applyEventRules } from "../mixpanel/event-rules.js";
import { withoutCallerTokens } from "./caller-tokens.js";
import { applyIdentityMode, isIdentityEvent } from "./identity.js";
import { jsonObjectSchema } from "../util/json-object.js";
import { rejectProtoKey } from "./property-names.js";
import { renamed } from "../util/renames.js";
import type { MapContext, MappedItem } from "./types.js";

/**
 * Native Mixpanel events: `[{event, properties}]` or `{"events": [...]}`.
 * The envelope is checked as a whole (a wrong shape is a 400); each event is
 * checked on its own so one bad event never fails the batch.
 */
const nativeEventSchema = z.object({
  event: z.string(),
  properties: jsonObjectSchema,
});

const nativeBatchSchema = z.union([
  z.array(z.unknown()),
  z.pipe(
    z.object({ events: z.array(z.unknown()) }),
    z.transform((body) => body.events),
  ),
]);

export function unwrapNativeBatch(body: unknown): unknown[] {
  const parsed = nativeBatchSchema.safeParse(body);
  if (!parsed.success) {
    throw new ValidationError('body must be a JSON array of events or an object {"events": [...]}');
  }
  return parsed.data;
}

export function mapNativeEvent(item: unknown, index: number, ctx: MapContext): MappedItem {
  // Before any zod parse: z.record would drop a "__proto__" property without a trace.
  const protoKey = rejectProtoKey(item, index);
  if (protoKey) return protoKey;
  const parsed = nativeEventSchema.safeParse(item);
  if (!parsed.success) {
    const where = parsed.error.issues[0]?.path.join(".") || "(event)";
    return {
      ok: false,
      index,
      code: "invalid_shape",
      reason: `${where}: ${parsed.error.issues[0]?.message ?? "must be {event, properties}"}`,
      payload: item,
    };
  }
  const { event } = parsed.data;
  const { properties, removed } = withoutCallerTokens(parsed.data.properties);
  const identity = applyIdentityMode(event, properties, ctx.config.identity_mode);
  if (!identity.ok) return { ok: false, index, code: identity.code, reason: identity.reason, payload: item };
  // Identity events keep their reserved names; only ordinary events follow event_mapping.
  const name = isIdentityEvent(event) ? event : renamed(event, ctx.config.event_mapping);
  const result = applyEventRules({ event: name, properties: identity.properties }, ctx.nowMs);
  if (!result.ok) return { ok: false, index, code: result.code, reason: result.reason, payload: item };
  return { ok: true, index, kind: "event", line: result.line, insertId: result.insertId, ...(removed > 0 ? { callerTokensRemoved: removed } : {}) };
}

export function mapNativeEvents(body: unknown, ctx: MapContext): MappedItem[] {
  return unwrapNativeBatch(body).map((item, index) => mapNativeEvent(item, index, ctx));
}
