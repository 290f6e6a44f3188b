import avro from "avsc";

/**
 * Builds Braze-Currents-like Avro object-container files for tests: the flat storage
 * layout (docs/vendors/braze-currents.md §3) with optional fields as unions with null.
 */
export type Flat = Record<string, unknown>;

const REQUIRED_FIELDS = new Set(["id", "user_id", "time", "name", "properties", "product_id", "price", "currency"]);

function isObject(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === "object" && !Array.isArray(value);
}

/** HTTP-layout fixture → flat Avro record: `user` lifted to the top, custom/purchase props JSON-encoded. */
export function flattenHttpEvent(event: Record<string, unknown>): Flat {
  const user = isObject(event.user) ? event.user : {};
  const properties = isObject(event.properties) ? event.properties : {};
  const flat: Flat = { id: event.id, time: event.time, ...user };
  for (const [key, value] of Object.entries(properties)) {
    if (key === "custom_properties" || key === "purchase_properties") flat.properties = JSON.stringify(value);
    else flat[key] = value;
  }
  return flat;
}

function avroType(value: unknown): unknown {
  if (typeof value === "string") return "string";
  if (typeof value === "boolean") return "boolean";
  if (typeof value === "number") return Number.isInteger(value) ? "long" : "double";
  if (Array.isArray(value)) return { type: "array", items: avroType(value[0] ?? "") };
  throw new Error(`no Avro type for ${JSON.stringify(value)}`);
}

/** A writer schema for the given records; `extraOptional` adds nullable fields the records leave null. */
export function schemaFor(name: string, records: readonly Flat[], extraOptional: readonly string[] = []): avro.Schema {
  const fields = new Map<string, unknown>();
  for (const record of records) {
    for (const [key, value] of Object.entries(record)) {
      if (value === null || value === undefined || fields.has(key)) continue;
      const type = key === "time" ? "int" : avroType(value);
      fields.set(key, REQUIRED_FIELDS.has(key) ? { name: key, type } : { name: key, type: ["null", type], default: null });
    }
  }
  for (const key of extraOptional) fields.set(key, { name: key, type: ["null", "string"], default: null });
  return { type: "record", name, namespace: "com.appboy.currents.test", fields: [...fields.values()] } as avro.Schema;
}

export async function avroFile(
  schema: avro.Schema,
  records: readonly Flat[],
  options: { codec?: string; codecs?: Record<string, (buffer: Buffer, callback: (error: Error | null, result?: Buffer) => void) => void> } = {},
): Promise<Buffer> {
  const type = avro.Type.forSchema(schema);
  if (!(type instanceof avro.types.RecordType)) throw new Error("schema must be a record");
  const filled = records.map((record) =>
    Object.fromEntries(
      type.fields.map((field) => [field.name, record[field.name] === undefined ? null : record[field.name]]),
    ),
  );
  const encoder = new avro.streams.BlockEncoder(type, {
    ...(options.codec ? { codec: options.codec } : {}),
    ...(options.codecs ? { codecs: options.codecs } : {}),
  });
  const chunks: Buffer[] = [];
  const done = new Promise<void>((resolve, reject) => {
    encoder.on("data", (chunk: Buffer) => chunks.push(chunk));
    encoder.on("end", () => resolve());
    encoder.on("error", reject);
  });
  for (const record of filled) encoder.write(record);
  encoder.end();
  await done;
  return Buffer.concat(chunks);
}

export function currentsKey(eventType: string, file = "dataexport.prod-01.S3.integration.abc123+0+0.avro"): string {
  return `currents/dataexport.prod-01.S3.integration.abc123/event_type=${eventType}/date=2026-11-21-18/417/0/${file}`;
}
