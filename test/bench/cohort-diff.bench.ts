/**
 * Large-cohort bench for the export's in-memory work (not a unit test):
 *   node --expose-gc --import tsx test/bench/cohort-diff.bench.ts [members=1000000]
 * Builds the current export columns (property hash + identity per member), decodes the
 * previous gzipped snapshot, diffs (1% changed, 1% left, 1% joined), builds the delivery
 * pages (1000 members, gzipped JSON like the S3 page objects) and encodes the next
 * snapshot (reusing the unchanged members' stored lines, as the export does).
 * Prints wall and CPU time per phase, snapshot size, peak RSS and heap; then
 * runs the partitioned path (cohort-partitioned.bench.ts) for the same size,
 * invocation by invocation. `-- <members> inmemory|partitioned` runs one of them.
 */
import { execFileSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { gzipSync } from "node:zlib";
import { PAGE_SIZE, type PageMember } from "../../lib/cohorts/messages.js";
import { chunk } from "../../lib/cohorts/plan.js";
import {
  type MemberColumns,
  decodeSnapshot,
  diffMembers,
  emptyColumns,
  encodeSnapshot,
  identityOf,
  propertyHash,
  sortedUniqueRows,
} from "../../lib/cohorts/snapshot.js";

const N = Number(process.argv[2] ?? 1_000_000);
let peakRss = 0;
let peakHeap = 0;
const sample = () => {
  const m = process.memoryUsage();
  peakRss = Math.max(peakRss, m.rss);
  peakHeap = Math.max(peakHeap, m.heapUsed);
};
const timer = setInterval(sample, 20);
const mb = (b: number) => `${(b / 1048576).toFixed(0)} MB`;
const phases: [string, number, number][] = [];
const cpuMs = (u: NodeJS.CpuUsage) => (u.user + u.system) / 1000;
async function phase<T>(name: string, work: () => Promise<T> | T): Promise<T> {
  const start = performance.now();
  const cpu = process.cpuUsage();
  const result = await work();
  sample();
  phases.push([name, performance.now() - start, cpuMs(process.cpuUsage(cpu))]);
  return result;
}

function props(i: number, changed: boolean): Record<string, unknown> {
  return { $email: `user${i}@example.com`, $first_name: `First${i}`, $last_name: `Last${i}`, plan: changed ? "free" : "pro", seats: i % 50 };
}
const id = (i: number) => `d-${(i * 2654435761) % 4294967296}-${i}`;

// Staged pages as the export reads them back: page by page, never all props at once.
function* stagedPages(): Generator<PageMember[]> {
  let page: PageMember[] = [];
  for (let i = N * 0.01; i < N * 1.01; i++) {
    page.push({ id: id(i), props: props(i, i % 100 === 50) });
    if (page.length === PAGE_SIZE) {
      yield page;
      page = [];
    }
  }
  if (page.length > 0) yield page;
}

async function inMemory(): Promise<void> {
  const total = performance.now();
  const previousBytes = await phase("build previous snapshot (setup)", async () => {
    const prev: MemberColumns = emptyColumns();
    for (let i = 0; i < N; i++) {
      const p = props(i, false);
      prev.ids.push(id(i));
      prev.hashes.push(propertyHash(p));
      prev.identities.push(identityOf(p, ["$email"]));
    }
    return encodeSnapshot({ v: 2, sync_id: "bench", cohort_id: 1, run_id: "prev", created_at: new Date().toISOString(), count: 0 }, prev, sortedUniqueRows(prev));
  });
  // Drop the setup's garbage so the peaks below are the export's own (run with node --expose-gc for this).
  const gc: unknown = Reflect.get(globalThis, "gc");
  if (typeof gc === "function") gc();
  peakRss = 0;
  peakHeap = 0;
  sample();
  const start = performance.now();
  const current = await phase("read staged pages → columns (hash + identity)", () => {
    const cols = emptyColumns();
    for (const page of stagedPages()) for (const m of page) {
      cols.ids.push(m.id);
      cols.hashes.push(propertyHash(m.props));
      cols.identities.push(identityOf(m.props, ["$email"]));
    }
    return cols;
  });
  const previous = await phase("decode previous snapshot", async () => (await decodeSnapshot(previousBytes)).columns);
  const diff = await phase("sort + merge diff", () => diffMembers(current, previous, false));
  const pageBytes = await phase("build delivery pages (gzipped JSON)", () => {
    let bytes = 0;
    let row = 0;
    let selected: PageMember[] = [];
    let pages = 0;
    for (const page of stagedPages()) for (const m of page) {
      if (diff.send[row++] === 1) selected.push(m);
      if (selected.length === PAGE_SIZE) {
        bytes += gzipSync(JSON.stringify({ members: selected })).length;
        selected = [];
        pages++;
      }
    }
    if (selected.length > 0) { bytes += gzipSync(JSON.stringify({ members: selected })).length; pages++; }
    const removed = diff.removedRows.map((j) => ({ id: previous.ids[j] ?? "", props: { identity: previous.identities[j] } }));
    for (const members of chunk(removed)) { bytes += gzipSync(JSON.stringify({ members })).length; pages++; }
    return { bytes, pages };
  });
  const next = await phase("encode next snapshot", () =>
    encodeSnapshot({ v: 2, sync_id: "bench", cohort_id: 1, run_id: "next", created_at: "", count: 0 }, current, diff.nextSnapshotRows, { previous, previousRow: diff.previousRow }),
  );
  const exportMs = performance.now() - start;
  clearInterval(timer);
  sample();

  console.log(`members: ${N.toLocaleString()} (previous ${previous.ids.length.toLocaleString()}, current ${current.ids.length.toLocaleString()})`);
  console.log(`diff: send ${diff.sendCount.toLocaleString()} (1% joined + 1% changed), remove ${diff.removedRows.length.toLocaleString()}, next snapshot ${diff.nextSnapshotRows.length.toLocaleString()}`);
  for (const [name, ms, cpu] of phases) console.log(`  ${name.padEnd(48)} ${(ms / 1000).toFixed(2)} s wall, ${(cpu / 1000).toFixed(2)} s CPU`);
  const exportCpu = phases.slice(1).reduce((sum, [, , cpu]) => sum + cpu, 0);
  console.log(`export work CPU (excl. setup; process CPU incl. zlib threads): ${(exportCpu / 1000).toFixed(2)} s`);
  console.log(`export work (excl. setup): ${(exportMs / 1000).toFixed(2)} s; total ${((performance.now() - total) / 1000).toFixed(2)} s`);
  console.log(`snapshot gz: ${mb(next.length)}; delivery pages: ${pageBytes.pages} (${mb(pageBytes.bytes)} gz)`);
  console.log(`peak during export work: RSS ${mb(peakRss)}, heap ${mb(peakHeap)} (after the setup was collected)`);
}

const mode = process.argv[3] ?? "both";
if (mode !== "partitioned") await inMemory();
if (mode !== "inmemory") {
  console.log("");
  execFileSync(process.execPath, ["--import", "tsx", fileURLToPath(new URL("./cohort-partitioned.bench.ts", import.meta.url)), String(N)], { stdio: "inherit" });
}
