import en from "zod/v4/locales/en.js";
import * as z from "zod/mini";

/**
 * zod's functional API (`zod/mini`): the same parser and checks as `import * as z from "zod"`,
 * without the classic API's chainable methods and per-schema JSON-Schema hooks. Building a schema
 * costs about half, its first use compiles less of zod, and a bundle without any classic-API schema
 * leaves out ~60 KB (issue 12, README "Performance").
 *
 * zod/mini leaves the choice of error messages to the caller; English is what the classic API
 * installs, so a schema gives the same messages through either API. (Imported on its own:
 * `z.locales` would bring every language into the bundle.)
 */
z.config(en());

export * from "zod/mini";

/**
 * A schema of either zod API (`zod` or `zod/mini`) as far as checking a value goes, and its
 * answer: what lib/util/json.ts's parseJsonWith takes while both APIs are in use.
 */
export type ZodType<T> = z.core.$ZodType<T> & { safeParse(data: unknown): ZodSafeParseResult<NoInfer<T>> };
export type ZodSafeParseResult<T> = z.core.util.SafeParseResult<T>;
