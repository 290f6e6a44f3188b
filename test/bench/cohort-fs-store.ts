import { existsSync, mkdirSync, readFileSync, readdirSync, statSync, writeFileSync, copyFileSync } from "node:fs";
import { dirname, join, relative } from "node:path";
import { gunzipSync, gzipSync } from "node:zlib";
import { type StagedPage, deliveryPageSchema, failureRecordSchema, initialSyncState, syncStateSchema, budgetStateSchema } from "../../lib/cohorts/messages.js";
import { lineMember } from "../../lib/cohorts/staged-line-reader.js";
import { StagedPageWriter } from "../../lib/cohorts/staged-page-writer.js";
import { StagedRows } from "../../lib/cohorts/staged-rows.js";
import { type CohortStore, keys } from "../../lib/cohorts/store.js";

/**
 * The cohort store over a local directory, for the large-cohort bench only:
 * every invocation runs in its own process (so its peak RSS is its own), and a
 * directory is the one store several processes share without a server holding
 * gigabytes of objects in memory. Same keys and encodings as store.ts.
 */
export function createFsCohortStore(root: string): CohortStore {
  const path = (key: string) => join(root, key);
  const pageWriter = new StagedPageWriter();
  const put = (key: string, body: Uint8Array | string) => {
    mkdirSync(dirname(path(key)), { recursive: true });
    writeFileSync(path(key), body);
  };
  const get = (key: string): Buffer | undefined => (existsSync(path(key)) ? readFileSync(path(key)) : undefined);
  const json = (key: string, gz: boolean): unknown => {
    const bytes = get(key);
    if (!bytes) return undefined;
    return JSON.parse((gz ? gunzipSync(bytes) : bytes).toString("utf8"));
  };
  const walk = (dir: string): string[] => {
    if (!existsSync(dir)) return [];
    return readdirSync(dir).flatMap((name) => {
      const full = join(dir, name);
      return statSync(full).isDirectory() ? walk(full) : [relative(root, full)];
    });
  };
  return {
    async readState(sync) {
      const raw = json(keys.state(sync), false);
      return raw === undefined ? initialSyncState() : syncStateSchema.parse(raw);
    },
    async writeState(sync, state) {
      put(keys.state(sync), JSON.stringify(state));
    },
    async readBudget() {
      const raw = json(keys.budget(), false);
      return raw === undefined ? [] : budgetStateSchema.parse(raw).calls;
    },
    async writeBudget(calls) {
      put(keys.budget(), JSON.stringify({ calls }));
    },
    async putStaged(sync, run, n, page: StagedPage) {
      put(keys.staged(sync, run, n), pageWriter.pageBytes(page.members));
    },
    async getStaged(sync, run, n) {
      const rows = await this.getStagedRows(sync, run, n);
      return { members: rows.ids.map((id, row) => lineMember(id, rows.line(row))) };
    },
    async getStagedRows(sync, run, n, into?: StagedRows) {
      const bytes = get(keys.staged(sync, run, n));
      if (!bytes) throw new Error(`staged page ${n} is missing`);
      return (into ?? new StagedRows()).add(bytes, "staged page");
    },
    async putBytes(key, body) {
      put(key, body);
    },
    async getBytes(key) {
      const bytes = get(key);
      return bytes ? new Uint8Array(bytes) : undefined;
    },
    async copy(from, to) {
      mkdirSync(dirname(path(to)), { recursive: true });
      copyFileSync(path(from), path(to));
    },
    async putPage(key, page) {
      put(key, gzipSync(JSON.stringify(page)));
    },
    async getPage(key) {
      return deliveryPageSchema.parse(json(key, true));
    },
    async exists(key) {
      return existsSync(path(key));
    },
    async list(prefix) {
      const dir = prefix.endsWith("/") ? path(prefix) : dirname(path(prefix));
      return walk(dir).filter((key) => key.startsWith(prefix));
    },
    async markDelivered(sync, run, action, page) {
      put(keys.delivered(sync, run, action, page), "");
    },
    async isDelivered(sync, run, action, page) {
      return existsSync(path(keys.delivered(sync, run, action, page)));
    },
    async markFailed(sync, run, action, page, record) {
      put(keys.failed(sync, run, action, page), JSON.stringify(record));
    },
    async readFailure(key) {
      const raw = json(key, false);
      return raw === undefined ? undefined : failureRecordSchema.parse(raw);
    },
  };
}
