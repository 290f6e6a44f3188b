import { Readable } from "node:stream";
import type avro from "avsc";
// avsc's entry point also loads its RPC services and IDL parser, which decoding a container file
// never uses: importing only the type system and the container decoder keeps them out of the
// currents-reader bundle (about 40 KB, and nearly half of avsc's load time; docs/performance.md).
import avroContainers from "avsc/lib/containers.js";
import avroTypes from "avsc/lib/types.js";
import { ValidationError } from "../util/errors.js";
import { mapBrazeEvent } from "./braze-currents.js";
import { CUSTOM_EVENT_TYPE, PURCHASE_EVENT_TYPE, normalizeBrazeEventType } from "../vocabulary/braze-labels.js";
import { setOwn } from "../util/renames.js";
import type { MapContext, MappedItem } from "./types.js";

/**
 * Braze Currents' storage transport: Avro object-container files in S3, one event type
 * per file, flat records (docs/vendors/braze-currents.md §3). Each record is reshaped into
 * the custom-HTTP layout and handed to the same per-event mapper, so both transports
 * produce identical Mixpanel records, and a rejected Avro event can be replayed through
 * POST /v1/braze/currents as is.
 */

/** `…/event_type=<type>/date=…/…` (§3). The type lives only in the key, not in the records. */
const EVENT_TYPE_SEGMENT = /(?:^|\/)event_type=([^/]+)\//;

export function brazeEventTypeFromKey(key: string): string | undefined {
  const match = EVENT_TYPE_SEGMENT.exec(key);
  return match?.[1];
}

/** Fields that sit under `user` in the custom-HTTP layout. */
const USER_FIELDS = new Set(["user_id", "external_user_id", "device_id", "timezone"]);

/**
 * One flat Avro record → one HTTP-layout event. Optional Avro fields are unions with
 * null that default to null, so a null here means "absent" and is left out, as the
 * HTTP layout omits absent keys. `properties` (a JSON-encoded string on CustomEvent and
 * Purchase) becomes `custom_properties` / `purchase_properties`; the mapper parses it.
 * Fields are copied as own keys (not through a zod record or `obj[key] =`), so a field named
 * "__proto__" reaches the mapper, which refuses it as `invalid_property_name`.
 */
export function brazeAvroRecordToEvent(record: unknown, eventType: string): unknown {
  const plain = toPlain(record);
  // Not a record: the mapper rejects it as invalid_shape with the value as payload.
  if (plain === null || typeof plain !== "object" || Array.isArray(plain)) return plain;
  const user: Record<string, unknown> = {};
  const properties: Record<string, unknown> = {};
  const event: Record<string, unknown> = { event_type: eventType };
  const normalizedType = normalizeBrazeEventType(eventType);
  for (const [key, value] of Object.entries(plain)) {
    if (value === null || value === undefined) continue;
    if (key === "id" || key === "time") event[key] = value;
    else if (USER_FIELDS.has(key)) user[key] = value;
    else if (key === "properties" && normalizedType === CUSTOM_EVENT_TYPE) properties.custom_properties = value;
    else if (key === "properties" && normalizedType === PURCHASE_EVENT_TYPE) properties.purchase_properties = value;
    else setOwn(properties, key, value);
  }
  event.user = user;
  event.properties = properties;
  return event;
}

/**
 * avsc returns record-class instances, Buffers for `bytes`/`fixed` and plain numbers for
 * `long` (within 2^53). Turn them into JSON-safe plain values: bytes become base64.
 */
function toPlain(value: unknown): unknown {
  if (Buffer.isBuffer(value)) return value.toString("base64");
  if (Array.isArray(value)) return value.map(toPlain);
  if (value !== null && typeof value === "object") {
    return Object.fromEntries(Object.entries(value).map(([key, inner]) => [key, toPlain(inner)]));
  }
  return value;
}

/**
 * The shortest decimal that reads back as the same 32-bit float. Avro `float` fields (Purchase
 * `price`, Location coordinates and accuracies, SessionEnd `duration`, docs/vendors/braze-currents.md §3)
 * decode to the float32 value widened to a double, so 3.14 would arrive as 3.140000104904175; the
 * HTTP transport sends 3.14, and both transports must give identical records.
 */
export function shortestFloat32(value: number): number {
  if (!Number.isFinite(value) || Math.fround(value) !== value) return value;
  // 9 significant digits always identify a float32, so the loop ends with a match.
  for (let digits = 1; digits <= 9; digits++) {
    const candidate = Number(value.toPrecision(digits));
    if (Math.fround(candidate) === value) return candidate;
  }
  return value;
}

/** Applies shortestFloat32 to every value the writer schema declares `float`, at any depth. */
export function narrowFloats(value: unknown, type: avro.Type): unknown {
  if (type instanceof avroTypes.builtins.FloatType) return typeof value === "number" ? shortestFloat32(value) : value;
  if (type instanceof avroTypes.builtins.UnwrappedUnionType) {
    // Unions are decoded unwrapped: the value's branch is the first that accepts it.
    const branch = type.types.find((candidate) => candidate.isValid(value));
    return branch === undefined ? value : narrowFloats(value, branch);
  }
  if (value === null || typeof value !== "object") return value;
  if (type instanceof avroTypes.builtins.ArrayType && Array.isArray(value)) return value.map((item) => narrowFloats(item, type.itemsType));
  if (type instanceof avroTypes.builtins.RecordType) {
    const narrowed: Record<string, unknown> = {};
    for (const [key, inner] of Object.entries(value)) {
      const field = type.fields.find((candidate) => candidate.name === key);
      setOwn(narrowed, key, field ? narrowFloats(inner, field.type) : inner);
    }
    return narrowed;
  }
  if (type instanceof avroTypes.builtins.MapType && type.valuesType instanceof avroTypes.Type) {
    const valuesType = type.valuesType;
    const narrowed: Record<string, unknown> = {};
    for (const [key, inner] of Object.entries(value)) setOwn(narrowed, key, narrowFloats(inner, valuesType));
    return narrowed;
  }
  return value;
}

/**
 * Decodes a whole Avro object-container file with its embedded writer schema.
 * avsc ships the `null` and `deflate` codecs; the production codec is unverified (§3),
 * so any other codec fails here with a message naming it. A corrupt or non-Avro file
 * is a ValidationError: reading it again can never succeed.
 */
export async function decodeAvroContainer(bytes: Uint8Array): Promise<unknown[]> {
  const records: unknown[] = [];
  const decoder = new avroContainers.streams.BlockDecoder();
  let writerType: avro.Type | undefined;
  try {
    await new Promise<void>((resolve, reject) => {
      // Emitted once, before any record, with the type built from the file's writer schema.
      decoder.on("metadata", (type: unknown) => {
        if (type instanceof avroTypes.Type) writerType = type;
      });
      decoder.on("data", (record: unknown) => records.push(writerType ? narrowFloats(record, writerType) : record));
      decoder.on("end", resolve);
      decoder.on("error", reject);
      Readable.from([Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)]).on("error", reject).pipe(decoder);
    });
  } catch (error) {
    throw new ValidationError(`not a readable Avro object-container file: ${error instanceof Error ? error.message : String(error)}`);
  }
  return records;
}

/** Decodes one Currents Avro file and maps every record; indexes are record positions in the file. */
export async function mapBrazeAvroFile(bytes: Uint8Array, key: string, ctx: MapContext): Promise<MappedItem[]> {
  const eventType = brazeEventTypeFromKey(key);
  if (eventType === undefined) {
    throw new ValidationError(`S3 key ${key} has no event_type=<type>/ segment, so its events cannot be named`);
  }
  const records = await decodeAvroContainer(bytes);
  return records.map((record, index) => mapBrazeEvent(brazeAvroRecordToEvent(record, eventType), index, ctx));
}
