import type * as z from "zod";

/**
 * The one place text becomes JSON values: every untrusted body (a sender's request, a vendor's
 * answer, a queue message, an S3 object, a secret) goes through these instead of a hand-written
 * try/JSON.parse, so "not JSON" is handled the same way everywhere.
 */
export type JsonText = { readonly ok: true; readonly value: unknown } | { readonly ok: false; readonly error: string };

/** JSON.parse as a result: `error` is the parser's message, for answers that say why. */
export function parseJson(text: string): JsonText {
  try {
    return { ok: true, value: JSON.parse(text) };
  } catch (error) {
    return { ok: false, error: error instanceof Error ? error.message : String(error) };
  }
}

/** JSON.parse that answers undefined for text that is not JSON (vendor bodies are not trusted). */
export function parseJsonOrUndefined(text: string): unknown {
  const parsed = parseJson(text);
  return parsed.ok ? parsed.value : undefined;
}

/**
 * Text checked against a schema in one step; text that is not JSON is checked as `undefined`,
 * so it fails every schema that does not accept a missing value.
 */
export function parseJsonWith<T>(schema: z.ZodType<T>, text: string): z.ZodSafeParseResult<T> {
  return schema.safeParse(parseJsonOrUndefined(text));
}
