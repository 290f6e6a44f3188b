import { readFileSync, readdirSync } from "node:fs";
import { join, relative } from "node:path";
import * as z from "zod";
import { parseStageConfig } from "../../../lib/config/stage.js";
import type { MapContext, MappedItem, MappedRecord, RejectedItem } from "../../../lib/sources/types.js";

export const FIXTURES_DIR = new URL("../../fixtures/braze-currents/", import.meta.url).pathname;

/** After every fixture time (late November 2026) so none of them is "in the future". */
export const NOW_MS = Date.UTC(2026, 10, 30, 12, 0, 0);

export function context(config: Record<string, unknown> = {}, nowMs = NOW_MS): MapContext {
  return { nowMs, config: parseStageConfig(config, "test") };
}

export function readJson(path: string): unknown {
  return JSON.parse(readFileSync(path, "utf8"));
}

export interface Fixture {
  readonly file: string;
  readonly event: Record<string, unknown>;
}

function walk(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) =>
    entry.isDirectory() ? walk(join(dir, entry.name)) : entry.name.endsWith(".json") ? [join(dir, entry.name)] : [],
  );
}

export function brazeFixtures(): Fixture[] {
  return [...walk(join(FIXTURES_DIR, "users")), ...walk(join(FIXTURES_DIR, "extra"))].map((path) => {
    const event = readJson(path);
    if (event === null || typeof event !== "object" || Array.isArray(event)) throw new Error(`${path} is not an object`);
    return { file: relative(FIXTURES_DIR, path), event: { ...event } };
  });
}

export function expectRecord(item: MappedItem | undefined): MappedRecord {
  if (item === undefined || !item.ok) throw new Error(`expected a record, got ${JSON.stringify(item)}`);
  return item;
}

export function expectRejected(item: MappedItem | undefined): RejectedItem {
  if (item === undefined || item.ok) throw new Error(`expected a rejection, got ${JSON.stringify(item)}`);
  return item;
}

const eventLineSchema = z.object({ event: z.string(), properties: z.record(z.string(), z.unknown()) }).strict();
const updateLineSchema = z.record(z.string(), z.unknown());

/** An /import record as the mapper serialized it. */
export function parseEventLine(item: MappedItem | undefined): z.infer<typeof eventLineSchema> {
  return eventLineSchema.parse(JSON.parse(expectRecord(item).line));
}

/** An /engage or /groups update as the mapper serialized it. */
export function parseUpdateLine(item: MappedItem | undefined): Record<string, unknown> {
  return updateLineSchema.parse(JSON.parse(expectRecord(item).line));
}
