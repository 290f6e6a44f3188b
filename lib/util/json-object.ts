import * as z from "./zod.js";

/**
 * A JSON object (not an array, not null) taken as it is. `z.record(z.string(), z.unknown())`
 * checks every key and copies every value into a new object; for a parsed-JSON object the
 * keys are strings by construction, so on the intake's hot path (a CPU profile shows the copy) this
 * schema checks the shape without the copy. Callers refuse `__proto__` keys before parsing
 * (lib/sources/property-names.ts), so the object holds nothing a copy would have dropped.
 */
export const jsonObjectSchema = z.custom<Record<string, unknown>>(
  (value) => value !== null && typeof value === "object" && !Array.isArray(value),
  { message: "expected an object" },
);
