import { createS3Client, createSqsClient } from "../../infra/aws/sdk-clients.js";
import { gzipSync } from "node:zlib";
import { CreateBucketCommand } from "@aws-sdk/client-s3";
import { CreateQueueCommand, ReceiveMessageCommand } from "@aws-sdk/client-sqs";
import fc from "fast-check";
import { buildApp } from "fauxqs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseStageConfig } from "../../lib/config/stage.js";
import { type CompatHttpRequest, handleMixpanelCompat, matchCompatEndpoint } from "../../lib/intake/mixpanel-compat/handler.js";
import type { CompatEndpoint } from "../../lib/intake/mixpanel-compat/records.js";
import type { IntakeDeps } from "../../lib/intake/process.js";
import { createRejectedStore } from "../../lib/queue/rejected-store.js";
import { createQueueSender } from "../../lib/queue/sqs-sender.js";
import { parseQueuedRecords } from "../../lib/records/envelope-v2.js";

/**
 * Hostile input on the Mixpanel-compatible routes: whatever arrives, the answer is a 2xx/4xx
 * with a body an SDK can read (`1`, `0` and the JSON shapes are all JSON), never a 5xx or a
 * crash while SQS and S3 (fauxqs, a real protocol server) are healthy; a 503 only when they are not.
 */
const app = buildApp({ logger: false });
let endpoint = "";
let queueUrl = "";
const INTAKE_TOKEN = "intake-token-for-compat-fuzz";
const PROJECT_TOKEN = "fuzz-project-token";
const ORIGIN = "https://app.example.com";

beforeAll(async () => {
  endpoint = await app.listen({ port: 0, host: "127.0.0.1" });
  process.env.AWS_ACCESS_KEY_ID ??= "test";
  process.env.AWS_SECRET_ACCESS_KEY ??= "test";
  const sqs = createSqsClient("us-east-1", endpoint);
  queueUrl = (await sqs.send(new CreateQueueCommand({ QueueName: "compat-fuzz", Attributes: { MaximumMessageSize: "262144" } }))).QueueUrl ?? "";
  await createS3Client("us-east-1", endpoint).send(new CreateBucketCommand({ Bucket: "compat-rejected" }));
});
afterAll(() => app.close());

function deps(compat: Record<string, unknown> = {}, overrides: Partial<IntakeDeps> = {}): IntakeDeps {
  return {
    config: parseStageConfig({ mixpanel_compat: { project_tokens: [PROJECT_TOKEN], cors_origins: [ORIGIN], ...compat } }, "fuzz"),
    tokens: async () => [INTAKE_TOKEN],
    queue: createQueueSender(createSqsClient("us-east-1", endpoint), 262_144),
    queueUrl,
    rejected: createRejectedStore({ s3: createS3Client("us-east-1", endpoint), bucket: "compat-rejected", prefix: "rejected/", stage: "fuzz", now: () => new Date() }),
    maxMessageBytes: 262_144,
    maxBodyBytes: 200_000,
    nowMs: Date.now,
    newCorrelationId: () => "fuzz-correlation",
    ...overrides,
  };
}

const endpoints: CompatEndpoint[] = ["track", "engage", "groups", "import"];
/** Nearly valid events: right token, odd names and property values. */
const plausibleEvents = fc.array(
  fc.record({
    event: fc.string({ minLength: 1 }),
    properties: fc
      .tuple(fc.stringMatching(/^[a-z0-9-]{3,20}$/), fc.dictionary(fc.string(), fc.jsonValue({ maxDepth: 2 }), { maxKeys: 5 }))
      .map(([distinctId, extra]) => ({ ...extra, token: PROJECT_TOKEN, distinct_id: `u-${distinctId}`, time: Date.now() - 1000 })),
  }),
  { minLength: 1, maxLength: 5 },
);
const hostileJson = fc.oneof(
  plausibleEvents,
  fc.jsonValue({ maxDepth: 4 }),
  fc.array(
    fc.record({
      event: fc.oneof(fc.string(), fc.constant("$identify"), fc.integer()),
      properties: fc.dictionary(
        fc.oneof(fc.string(), fc.constantFrom("__proto__", "token", "time", "distinct_id", "$insert_id", "ip", "constructor")),
        fc.jsonValue({ maxDepth: 3 }),
        { maxKeys: 8 },
      ),
    }),
    { maxLength: 5 },
  ),
  fc.array(
    fc.dictionary(
      fc.constantFrom("$token", "$distinct_id", "$group_key", "$group_id", "$set", "$add", "$unset", "$delete", "$ip", "__proto__", "$device_id"),
      fc.oneof(fc.constant(PROJECT_TOKEN), fc.jsonValue({ maxDepth: 2 })),
    ),
    { maxLength: 5 },
  ),
);
/** A JSON text; fast-check's dictionaries hold "__proto__" as an own key, which JSON.parse keeps too. */
const jsonText = hostileJson.map((value) => JSON.stringify(value));
const dataValue = fc.oneof(
  jsonText,
  jsonText.map((text) => Buffer.from(text).toString("base64")),
  jsonText.map((text) => Buffer.from(text).toString("base64").replace(/=+$/, "")),
  fc.string(),
);
const body = fc.oneof(
  fc.constant(undefined),
  fc.uint8Array({ maxLength: 300 }).map((bytes) => Buffer.from(bytes)),
  dataValue.map((value) => Buffer.from(`data=${value}`)),
  dataValue.map((value) => Buffer.from(`data=${encodeURIComponent(value)}&verbose=1&ip=1`)),
  jsonText.map((text) => Buffer.from(text)),
  jsonText.map((text) => gzipSync(text)),
  fc.array(jsonText, { maxLength: 4 }).map((lines) => Buffer.from(lines.join("\n"))),
);
const request = fc.record({
  method: fc.constantFrom("GET", "POST", "POST", "GET", "OPTIONS", "PUT", "HEAD"),
  endpoint: fc.constantFrom(...endpoints),
  slash: fc.boolean(),
  rawQuery: fc.oneof(
    fc.string(),
    dataValue.map((value) => `data=${encodeURIComponent(value)}&verbose=1`),
    dataValue.map((value) => `ip=1&strict=1&data=${value}`),
    fc.constantFrom("verbose=1", "strict=1&verbose=1", "ip=1&_=1234567890123", ""),
  ),
  contentType: fc.constantFrom(undefined, "application/json", "application/x-www-form-urlencoded", "text/plain;charset=UTF-8", "application/x-ndjson", "image/png"),
  contentEncoding: fc.constantFrom(undefined, "gzip", "deflate", "br, gzip", ""),
  origin: fc.constantFrom(undefined, undefined, undefined, ORIGIN, "https://evil.example", "null"),
  authorization: fc.oneof(
    fc.constant(undefined),
    fc.constant(`Bearer ${INTAKE_TOKEN}`),
    fc.constant(`Basic ${Buffer.from(`${INTAKE_TOKEN}:`).toString("base64")}`),
    fc.string().map((value) => `Basic ${value}`),
  ),
  body,
});

type FuzzRequest = typeof request extends fc.Arbitrary<infer T> ? T : never;

function toHttpRequest(input: FuzzRequest): CompatHttpRequest {
  const headers: Record<string, string | undefined> = {
    "content-type": input.contentType,
    "content-encoding": input.contentEncoding,
    origin: input.origin,
    authorization: input.authorization,
  };
  return {
    method: input.method,
    path: `/${input.endpoint}${input.slash ? "/" : ""}`,
    headers,
    query: {},
    rawQuery: input.rawQuery,
    sourceIp: "203.0.113.7",
    body: input.body,
  };
}

describe("Mixpanel-compatible routes under hostile input", () => {
  it("always answer 2xx/4xx with a readable body, never a 5xx or a throw", async () => {
    const healthy = deps();
    const statuses = new Map<number, number>();
    let queued = 0;
    await fc.assert(
      fc.asyncProperty(request, async (input) => {
        const httpRequest = toHttpRequest(input);
        const routed = matchCompatEndpoint(httpRequest.path, healthy.config);
        expect(routed).toBe(input.endpoint);
        const result = await handleMixpanelCompat(httpRequest, input.endpoint, healthy);
        const { statusCode, body: text, headers } = result.response;
        statuses.set(statusCode, (statuses.get(statusCode) ?? 0) + 1);
        queued += result.summary?.accepted ?? 0;
        expect(statusCode).toBeGreaterThanOrEqual(200);
        expect(statusCode).toBeLessThan(500);
        if (statusCode !== 204) expect(() => JSON.parse(text)).not.toThrow();
        expect(headers["x-correlation-id"]).toBe("fuzz-correlation");
        if (input.origin === ORIGIN) expect(headers["access-control-allow-origin"]).toBe(ORIGIN);
        else expect(headers["access-control-allow-origin"]).toBeUndefined();
      }),
      // A fixed seed: the same corpus on every run, so the counts below cannot flake.
      { numRuns: 300, seed: 1127 },
    );
    // The runs reached the decoders and mappers, not only the early refusals.
    expect(statuses.get(200) ?? 0).toBeGreaterThan(30);
    expect(statuses.get(400) ?? 0).toBeGreaterThan(10);
    expect(queued).toBeGreaterThan(0);
  }, 120_000);

  it("answers 503 in the SDK's format when the queue is down, so SDKs retry", async () => {
    const down = deps({}, { queueUrl: `${endpoint}/000000000000/no-such-queue` });
    const data = Buffer.from(JSON.stringify([{ event: "E", properties: { token: PROJECT_TOKEN, distinct_id: "u" } }])).toString("base64");
    const legacy = await handleMixpanelCompat({ method: "GET", path: "/track", headers: {}, query: {}, rawQuery: `data=${data}`, body: undefined }, "track", down);
    expect(legacy.response.statusCode).toBe(503);
    expect(legacy.response.body).toBe("0");
    const verbose = await handleMixpanelCompat({ method: "GET", path: "/track", headers: { origin: ORIGIN }, query: {}, rawQuery: `verbose=1&data=${data}`, body: undefined }, "track", down);
    expect(verbose.response.statusCode).toBe(503);
    expect(JSON.parse(verbose.response.body)).toEqual({ status: 0, error: "could not queue the batch; retry later" });
    expect(verbose.response.headers["access-control-allow-origin"]).toBe(ORIGIN);
  });

  it("client_ip: false keeps client addresses out even when the SDK asks for ip=1", async () => {
    const sqs = createSqsClient("us-east-1", endpoint);
    const privateStage = deps({ client_ip: false });
    const data = Buffer.from(JSON.stringify({ event: "Private", properties: { token: PROJECT_TOKEN, distinct_id: "p", time: Date.now() } })).toString("base64");
    const result = await handleMixpanelCompat(
      { method: "GET", path: "/track/", headers: {}, query: {}, rawQuery: `ip=1&data=${encodeURIComponent(data)}`, sourceIp: "203.0.113.9", body: undefined },
      "track",
      privateStage,
    );
    expect(result.response.body).toBe("1");
    const records: string[] = [];
    for (let attempt = 0; attempt < 20 && !records.some((line) => line.includes('"Private"')); attempt += 1) {
      const received = await sqs.send(new ReceiveMessageCommand({ QueueUrl: queueUrl, MaxNumberOfMessages: 10, WaitTimeSeconds: 0 }));
      for (const message of received.Messages ?? []) records.push(...parseQueuedRecords(message.Body ?? "").lines());
    }
    const line = records.find((candidate) => candidate.includes('"Private"'));
    expect(line).toBeDefined();
    expect(JSON.parse(line ?? "{}").properties).toMatchObject({ ip: "0", distinct_id: "p" });
    expect(line).not.toContain("203.0.113.9");
  });

  it("matches only configured paths: the prefix, the four endpoints, an optional trailing slash", () => {
    const config = parseStageConfig({ mixpanel_compat: { path_prefix: "/_mp/api", project_tokens: ["t"] } }, "test");
    expect(matchCompatEndpoint("/_mp/api/track", config)).toBe("track");
    expect(matchCompatEndpoint("/_mp/api/engage/", config)).toBe("engage");
    for (const path of ["/track", "/_mp/api/track//", "/_mp/api/decide", "/_mp/apitrack", "/_mp/api/", "/_mp/api/import/x"]) {
      expect(matchCompatEndpoint(path, config), path).toBeUndefined();
    }
    expect(matchCompatEndpoint("/track", parseStageConfig({}, "test"))).toBeUndefined();
    expect(() => parseStageConfig({ mixpanel_compat: { project_tokens: ["t"], cors_origins: ["https://a.example/"] } }, "test")).toThrow(
      /mixpanel_compat\.cors_origins\.0/,
    );
  });
});
