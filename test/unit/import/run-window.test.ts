import { Readable } from "node:stream";
import { describe, expect, it } from "vitest";
import { parseStageConfig } from "../../../lib/config/stage.js";
import type { Checkpoint, CheckpointStore } from "../../../lib/import/checkpoint.js";
import { type BatchSender, runImport } from "../../../lib/import/run.js";

const NOW_MS = Date.parse("2026-12-01T00:00:00Z");
const config = parseStageConfig({}, "test");

function ndjson(count: number): Buffer {
  return Buffer.from(Array.from({ length: count }, (_, n) => JSON.stringify({ event: "e", properties: { distinct_id: `u${n}`, time: NOW_MS / 1000 - 60, n } })).join("\n"));
}

function memoryStore(): CheckpointStore & { readonly written: Checkpoint[] } {
  const written: Checkpoint[] = [];
  return {
    where: "memory",
    written,
    read: async () => undefined,
    write: async (checkpoint) => void written.push(structuredClone(checkpoint)),
  };
}

/** A sender whose batches end in the order the test releases them. */
function heldSender() {
  const pending: { first: number; release: () => void; fail: (error: Error) => void }[] = [];
  let inFlight = 0;
  let mostInFlight = 0;
  const send: BatchSender = (items) =>
    new Promise((done, fail) => {
      inFlight += 1;
      mostInFlight = Math.max(mostInFlight, inFlight);
      pending.push({
        first: items[0]?.index ?? -1,
        release: () => {
          inFlight -= 1;
          done({ accepted: items.length, rejections: [] });
        },
        fail: (error) => {
          inFlight -= 1;
          fail(error);
        },
      });
    });
  return { send, pending, mostInFlight: () => mostInFlight };
}

const settle = () => new Promise((done) => setTimeout(done, 20));

function run(send: BatchSender, store: CheckpointStore, inFlightBatches: number) {
  return runImport(
    {
      files: [{ ref: { kind: "stream", path: "h.ndjson", open: async () => Readable.from([ndjson(50)]) }, format: "ndjson" }],
      kind: "events",
      source: "native",
      columns: {},
      filter: {},
      dryRun: false,
      batchRows: 10,
      checkpoint: store,
      resume: false,
      runKey: "k",
      inFlightBatches,
    },
    { config, policy: undefined, sendBatch: send, nowMs: () => NOW_MS, log: () => undefined },
  );
}

describe("batches in flight", () => {
  it("sends up to inFlightBatches at once, and checkpoints a batch only after every batch before it", async () => {
    const sender = heldSender();
    const store = memoryStore();
    const running = run(sender.send, store, 3);
    await settle();
    expect(sender.pending).toHaveLength(3);
    // The third and second end first: nothing may be checkpointed while the first is out.
    sender.pending[2]?.release();
    sender.pending[1]?.release();
    await settle();
    expect(store.written.map((checkpoint) => checkpoint.files["h.ndjson"]?.rowsDone ?? 0)).toEqual([]);
    sender.pending[0]?.release();
    await settle();
    expect(Math.max(...store.written.map((checkpoint) => checkpoint.files["h.ndjson"]?.rowsDone ?? 0))).toBe(30);
    for (let turn = 0; turn < 10 && sender.pending.length < 5; turn += 1) await settle();
    sender.pending[3]?.release();
    sender.pending[4]?.release();
    const report = await running;
    expect(report).toMatchObject({ read: 50, accepted: 50, sent: 50 });
    expect(sender.mostInFlight()).toBe(3);
    expect(store.written.at(-1)?.files["h.ndjson"]).toEqual({ rowsDone: 50, finished: true });
  });

  it("stops at a batch Mixpanel did not take: the checkpoint stays before it though later batches ended", async () => {
    const sender = heldSender();
    const store = memoryStore();
    const running = run(sender.send, store, 3);
    running.catch(() => undefined);
    await settle();
    sender.pending[0]?.release();
    sender.pending[2]?.release();
    sender.pending[1]?.fail(new Error("Mixpanel did not take row 11"));
    await settle();
    // The run waits for the sends still out before it stops.
    let settled = false;
    void running.catch(() => (settled = true));
    await settle();
    expect(settled).toBe(false);
    for (const held of sender.pending.slice(3)) held.release();
    await expect(running).rejects.toThrow("Mixpanel did not take row 11");
    expect(Math.max(...store.written.map((checkpoint) => checkpoint.files["h.ndjson"]?.rowsDone ?? 0))).toBe(10);
  });
});
