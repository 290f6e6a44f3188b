import en from "zod/v4/locales/en.js";
import * as z from "zod/mini";

/**
 * zod's functional API (`zod/mini`): the same parser and checks as `import * as z from "zod"`,
 * without the classic API's chainable methods and per-schema JSON-Schema hooks. Building a schema
 * costs about half, its first use compiles less of zod, and a bundle without any classic-API schema
 * leaves out ~60 KB (docs/performance.md).
 *
 * zod/mini leaves the choice of error messages to the caller; English is what the classic API
 * installs, so a schema gives the same messages through either API. (Imported on its own:
 * `z.locales` would bring every language into the bundle.)
 */
z.config(en());

export * from "zod/mini";

/**
 * A schema as far as checking a value goes, and its answer: what lib/util/json.ts's
 * parseJsonWith and the secret reader take (any zod schema would do; the product builds all
 * of its schemas with this module, so no function bundle carries the classic API).
 */
export type ZodType<T> = z.core.$ZodType<T> & { safeParse(data: unknown): ZodSafeParseResult<NoInfer<T>> };
export type ZodSafeParseResult<T> = z.core.util.SafeParseResult<T>;

/**
 * `schema.parse(value)` as the classic API throws it: zod/mini names its error "$ZodError" where
 * the classic API says "ZodError", and a thrown parse error reaches operators as `name: message`
 * (describeError: e.g. the forwarder's reason for a queue message it cannot read).
 */
export function parseOrThrow<T>(schema: ZodType<T>, value: unknown): T {
  const result = schema.safeParse(value);
  if (result.success) return result.data;
  result.error.name = "ZodError";
  throw result.error;
}
