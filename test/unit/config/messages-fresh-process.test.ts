import { execFileSync } from "node:child_process";
import { describe, expect, it } from "vitest";

/**
 * The stage config and environment schemas use zod's functional API (lib/util/zod.ts), which
 * has no error messages of its own until a locale is installed. In a test worker some other
 * module may already have built a classic-API schema (which installs English), so the check
 * runs in a fresh process that loads only lib/config: what a function's cold start sees.
 */
const SCRIPT = `
const { parseStageConfig } = await import("./lib/config/stage.ts");
const { readEnv } = await import("./lib/config/env.ts");
const messages = [];
for (const attempt of [
  () => parseStageConfig({ residency: "mars" }, "config/test.json", "prod"),
  () => parseStageConfig({ cohort_syncs: [{ id: "a", cohort_id: 0, destination: { type: "webhook", url: "https://example.com/h", signing_secret: "s" } }] }, "config/test.json", "prod"),
  () => parseStageConfig({ residency: "us", unknown_key: 1 }, "config/test.json", "prod"),
  () => readEnv({ IMPORT_CONCURRENCY: "11" }),
  () => readEnv({ PII_HASH_KEY: "short" }),
]) {
  try { attempt(); messages.push("(no error)"); } catch (error) { messages.push(String(error.message)); }
}
process.stdout.write(JSON.stringify(messages));
`;

describe("config error messages at cold start", () => {
  it("are English and name the key, with no other zod API loaded", () => {
    const output = execFileSync(process.execPath, ["--import", "tsx", "--input-type=module", "-e", SCRIPT], {
      encoding: "utf8",
      env: { ...process.env, NODE_OPTIONS: "" },
    });
    const [residency, cohortId, unknownKey, concurrency, hashKey] = JSON.parse(output) as string[];
    expect(residency).toBe('invalid stage config config/test.json: residency: Invalid option: expected one of "us"|"eu"|"in"');
    expect(cohortId).toBe("invalid stage config config/test.json: cohort_syncs.0.cohort_id: Too small: expected number to be >0");
    expect(unknownKey).toBe('invalid stage config config/test.json: (root): Unrecognized key: "unknown_key"');
    expect(concurrency).toBe("invalid environment: IMPORT_CONCURRENCY: Too big: expected number to be <=10");
    expect(hashKey).toBe("invalid environment: PII_HASH_KEY: Too small: expected string to have >=32 characters");
  });
});
