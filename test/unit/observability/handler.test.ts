import type { Context } from "aws-lambda";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { invocationClock, withTelemetry } from "../../../lib/observability/handler.js";
import { count, logger } from "../../../lib/observability/telemetry.js";
import { HASH_BYTES_PER_LOG_LINE, insertIdHash, logInsertIdHashes } from "../../../lib/observability/trace-ids.js";
import { jsonLinesWhile } from "../../support/log-capture.js";

// What Lambda sets for an on-demand container; Powertools reads it when the logger is built.
vi.hoisted(() => {
  process.env.AWS_LAMBDA_INITIALIZATION_TYPE = "on-demand";
});

/** The JSON lines Powertools writes while `run` runs (info lines on stdout, errors on stderr); what it throws is left out. */
const captureLines = (run: () => Promise<unknown>) => jsonLinesWhile(() => run().catch(() => undefined));

function context(requestId: string, remaining = 42_000): Context {
  return {
    callbackWaitsForEmptyEventLoop: false,
    functionName: "mixpanel-relay-test-forwarder",
    functionVersion: "$LATEST",
    invokedFunctionArn: "arn:aws:lambda:us-east-1:000000000000:function:mixpanel-relay-test-forwarder",
    memoryLimitInMB: "1024",
    awsRequestId: requestId,
    logGroupName: "/aws/lambda/mixpanel-relay-test-forwarder",
    logStreamName: "test",
    getRemainingTimeInMillis: () => remaining,
    done: () => undefined,
    fail: () => undefined,
    succeed: () => undefined,
  };
}

describe("withTelemetry", () => {
  const saved = { ...process.env };
  beforeEach(() => {
    process.env.POWERTOOLS_METRICS_DISABLED = "false";
    logger.setLogLevel("INFO");
  });
  afterEach(() => {
    process.env = { ...saved };
  });

  it("puts the Lambda context on every line, marks only the first invocation cold, and clears the correlation id", async () => {
    const clock = invocationClock();
    const seen: number[] = [];
    const handler = withTelemetry(
      clock,
      async (event: { id: string }, invocation) => {
        logger.info("before correlation");
        invocation.correlate(`corr-${event.id}`);
        seen.push(invocation.remainingMs());
        logger.info("after correlation");
        return event.id;
      },
      { failureMessage: "failed" },
    );
    const first = await captureLines(() => handler({ id: "a" }, context("req-1", 41_000)));
    const second = await captureLines(() => handler({ id: "b" }, context("req-2", 39_000)));

    const firstLogs = first.filter((line) => typeof line.message === "string");
    expect(firstLogs.map((line) => line.message)).toEqual(["before correlation", "after correlation"]);
    for (const line of firstLogs) {
      expect(line.function_request_id).toBe("req-1");
      expect(line.cold_start).toBe(true);
      expect(line.function_name).toBe("mixpanel-relay-test-forwarder");
    }
    expect(firstLogs[0]?.correlationId).toBeUndefined();
    expect(firstLogs[1]?.correlationId).toBe("corr-a");

    const secondLogs = second.filter((line) => typeof line.message === "string");
    expect(secondLogs[0]?.function_request_id).toBe("req-2");
    expect(secondLogs[0]?.cold_start).toBe(false);
    // The first invocation's correlation id did not leak into the next one.
    expect(secondLogs[0]?.correlationId).toBeUndefined();
    expect(secondLogs[1]?.correlationId).toBe("corr-b");

    // A ColdStart metric on the first invocation only.
    const coldStartMetrics = [...first, ...second].filter((line) => "ColdStart" in line);
    expect(coldStartMetrics).toHaveLength(1);
    expect(seen).toEqual([41_000, 39_000]);
    expect(clock.remainingMs()).toBe(0);
  });

  it("flushes the invocation's metrics, and turns an unhandled failure into the event source's answer with its cause logged", async () => {
    const handler = withTelemetry(
      invocationClock(),
      async (_event: { ids: string[] }) => {
        count("EventsImported", 3);
        throw new Error("secret store unreachable");
      },
      { failureMessage: "batch failed", onFailure: (event) => ({ failed: event.ids }) },
    );
    let result: unknown;
    const lines = await captureLines(async () => {
      result = await handler({ ids: ["m1", "m2"] }, context("req-3"));
    });
    expect(result).toEqual({ failed: ["m1", "m2"] });
    const failure = lines.find((line) => line.message === "batch failed");
    expect(failure?.level).toBe("ERROR");
    expect(failure?.error).toBe("Error: secret store unreachable");
    expect(failure?.function_request_id).toBe("req-3");
    const emf = lines.find((line) => "EventsImported" in line);
    expect(emf?.EventsImported).toBe(3);
  });

  it("keeps each function's context on its own lines when functions share a process and overlap", async () => {
    const named = (functionName: string, requestId: string): Context => ({ ...context(requestId), functionName });
    let releaseForwarder: () => void = () => undefined;
    const forwarderMayFinish = new Promise<void>((resolve) => {
      releaseForwarder = resolve;
    });
    const forwarder = withTelemetry(
      invocationClock(),
      async () => {
        logger.info("forwarder started");
        await forwarderMayFinish;
        logger.info("forwarder finished");
      },
      { failureMessage: "failed" },
    );
    const exporter = withTelemetry(
      invocationClock(),
      async (_event: unknown, invocation) => {
        invocation.correlate("export-correlation");
        logger.info("export ran");
      },
      { failureMessage: "failed" },
    );
    // The local stack's intake before it was given a context: it must not borrow another function's.
    const intake = withTelemetry(
      invocationClock(),
      async () => {
        logger.info("intake ran");
      },
      { failureMessage: "failed" },
    );
    const lines = await captureLines(async () => {
      const running = forwarder({}, named("forwarder", "fwd-1"));
      await exporter({}, named("cohort-export", "exp-1"));
      releaseForwarder();
      await running;
      await intake({});
    });
    const byMessage = Object.fromEntries(lines.filter((line) => typeof line.message === "string").map((line) => [line.message, line]));
    expect(byMessage["forwarder started"]).toMatchObject({ function_name: "forwarder", function_request_id: "fwd-1" });
    expect(byMessage["export ran"]).toMatchObject({ function_name: "cohort-export", function_request_id: "exp-1", correlationId: "export-correlation" });
    expect(byMessage["forwarder finished"]).toMatchObject({ function_name: "forwarder", function_request_id: "fwd-1" });
    expect(byMessage["forwarder finished"]).not.toHaveProperty("correlationId");
    expect(byMessage["intake ran"]).not.toHaveProperty("function_name");
    expect(byMessage["intake ran"]).not.toHaveProperty("function_request_id");
  });

  it("rethrows when the event source should retry (no onFailure)", async () => {
    const handler = withTelemetry(
      invocationClock(),
      async () => {
        throw new Error("boom");
      },
      { failureMessage: "tick failed" },
    );
    await expect(handler({}, context("req-4"))).rejects.toThrow("boom");
  });
});

describe("insertIdHash", () => {
  it("is a stable 8-character base64url digest (48 bits) that does not contain the id", () => {
    const hash = insertIdHash("user-42@example.com:signup");
    expect(hash).toMatch(/^[\w-]{8}$/);
    expect(insertIdHash("user-42@example.com:signup")).toBe(hash);
    expect(insertIdHash("user-43@example.com:signup")).not.toBe(hash);
  });
});

describe("logInsertIdHashes", () => {
  const INFO = async (run: () => void) => {
    logger.setLogLevel("INFO");
    try {
      return await captureLines(async () => run());
    } finally {
      logger.setLogLevel("WARN");
    }
  };

  it("puts the counts on one line and the hashes past CloudWatch's event size on continuation lines", async () => {
    const hashes = Array.from({ length: 8_000 }, (_, i) => insertIdHash(`event-${i}`));
    const lines = await INFO(() => logInsertIdHashes("intake batch", { accepted: 8_000 }, hashes, { evenWithout: true }));
    expect(lines.map((line) => line.message)).toEqual(["intake batch", "intake batch (insert ids continued)"]);
    expect(lines[0]).toMatchObject({ accepted: 8_000 });
    expect(lines[1]).not.toHaveProperty("accepted");
    expect(lines.flatMap((line) => line.insertIdHashes as string[])).toEqual(hashes);
    for (const line of lines) expect(JSON.stringify(line.insertIdHashes).length).toBeLessThanOrEqual(HASH_BYTES_PER_LOG_LINE + 2);
  });

  it("writes the edge's line even with no hash, and nothing for the forwarder's empty lists", async () => {
    const edge = await INFO(() => logInsertIdHashes("intake batch", { accepted: 0 }, [], { evenWithout: true }));
    expect(edge).toEqual([expect.objectContaining({ message: "intake batch", accepted: 0, insertIdHashes: [] })]);
    expect(await INFO(() => logInsertIdHashes("forwarded records", { outcome: "pending" }, []))).toEqual([]);
  });
});
