import { rmSync } from "node:fs";
import { dirname } from "node:path";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { LOCAL_MIXPANEL_CREDENTIALS, type LocalStack, startLocalStack } from "../../infra/local/stack.js";
import { eventually } from "../support/eventually.js";
import { writeStageConfig } from "../support/local-stack.js";
import { type CompatFuzzRequest, compatAnswerProblem, compatRequest } from "./compat-corpus.js";

/**
 * The Mixpanel-compatible routes in every encoding (test/fuzz/compat-corpus.ts) through the local
 * stack's HTTP front and the real handler and queue: never a 5xx, always a JSON answer, deep and
 * undeclared non-UTF-8 bodies refused whole with their code, and every valid record (emoji
 * written the way mixpanel-browser writes them, declared charsets) in the sandbox with its text
 * intact. Fixed seed, bounded runs.
 */
const SEED = Number(process.env.FUZZ_SEED ?? 20_261_206);
const RUNS = 120;
let stack: LocalStack;
let dir = "";

beforeAll(async () => {
  const configFile = writeStageConfig({ mixpanel_compat: { project_tokens: [LOCAL_MIXPANEL_CREDENTIALS.projectToken], cors_origins: [] } }, "relay-compat-fuzz-");
  dir = dirname(configFile);
  stack = await startLocalStack({ configFile, visibilityTimeoutSeconds: 2, env: { POWERTOOLS_LOG_LEVEL: "ERROR" } });
});
afterAll(async () => {
  await stack?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

async function fire(request: CompatFuzzRequest): Promise<{ status: number; text: string }> {
  const response = await fetch(`${stack.intakeUrl}${request.path}?${request.query}`, {
    method: request.method,
    headers: request.headers,
    ...(request.body !== undefined ? { body: new Uint8Array(request.body) } : {}),
  });
  return { status: response.status, text: await response.text() };
}

describe("Mixpanel-compatible routes, every encoding", () => {
  it("answers 2xx/4xx with JSON, refuses deep and undeclared non-UTF-8 bodies whole, and keeps every valid record's text", async () => {
    const accepted: { request: CompatFuzzRequest; id: string }[] = [];
    const forms = new Map<string, number>();
    await fc.assert(
      fc.asyncProperty(compatRequest({ projectToken: LOCAL_MIXPANEL_CREDENTIALS.projectToken, intakeToken: stack.intakeToken }), async (request) => {
        const answer = await fire(request);
        expect(compatAnswerProblem(request, answer.status, answer.text)).toBeUndefined();
        forms.set(request.form, (forms.get(request.form) ?? 0) + 1);
        if (request.sent) accepted.push({ request, id: request.sent.id });
      }),
      { seed: SEED, numRuns: RUNS },
    );
    expect([...forms.keys()].length).toBeGreaterThanOrEqual(8);
    expect(accepted.length).toBeGreaterThan(RUNS / 3);
    for (const { request, id } of accepted) {
      const label = await eventually(() => {
        const sandbox = stack.sandbox;
        if (request.path === "/engage") return sandbox?.profiles.get(id)?.label;
        if (request.path === "/groups") return sandbox?.groups.get(`company:${id}`)?.label;
        return sandbox?.events.find((event) => event.properties.distinct_id === id)?.properties.label;
      });
      expect(label, `${request.path} ${request.form} ${JSON.stringify(request.headers)}`).toBe(request.sent?.label);
    }
  }, 180_000);
});
