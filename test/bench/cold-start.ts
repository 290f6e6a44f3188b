import { execFileSync, spawnSync } from "node:child_process";
import { cpSync, existsSync, mkdtempSync, readdirSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

/**
 * Bundles both trees with their own infra/build.ts (esbuild, minified, as deployed), then
 * times `await import()` of each function's bundle in a fresh Node process: module
 * evaluation plus compile, which is what a Lambda cold start pays before the handler runs.
 * Old and new alternate, `repeats` times each (at least 5); the median is reported.
 * Each import is timed twice: plain, and with `--enable-source-maps`, the NODE_OPTIONS
 * serverless.yml gives every function (today's too), under which Node also reads and parses
 * the bundle's source map at load: that is the cold start Lambda actually pays.
 *
 * Each tree's dist/ is copied to a private directory right after its build, so another
 * run building the shared baseline checkout at the same time cannot swap files mid-timing
 * (a bundle only needs Node built-ins, so it runs from anywhere).
 *
 * A function that did not exist in the baseline (brevo-forwarder at 982b043) has no
 * "today" figure of its own: its share is taken against the baseline forwarder's import,
 * the nearest function (an SQS-triggered sender), and the row says so.
 */
export interface ColdStartRow {
  readonly variant: "old" | "new";
  readonly name: string;
  readonly kib: number;
  readonly bytes: number;
  readonly importMs: number;
  readonly samples: number[];
  /** The same with `--enable-source-maps`, as deployed. */
  readonly importMsWithSourceMaps: number;
  readonly samplesWithSourceMaps: number[];
  /** new rows: median import as a share of today's (same run); `comparedWith` names the baseline bundle used. */
  readonly shareOfToday?: number;
  readonly shareOfTodayWithSourceMaps?: number;
  readonly comparedWith?: string;
}

/** The bundle a function without a baseline of its own is compared with. */
export const FALLBACK_BASELINE = "forwarder";

function buildSnapshot(root: string, label: string): string {
  execFileSync(process.execPath, ["--import", "tsx", "infra/build.ts"], { cwd: root, stdio: "ignore" });
  const snapshot = mkdtempSync(join(tmpdir(), `relay-coldstart-${label}-`));
  cpSync(join(root, "dist"), snapshot, { recursive: true });
  return snapshot;
}

const IMPORT_SCRIPT = `const t=performance.now();await import(process.argv[1]);process.stdout.write(String(performance.now()-t));`;

function importMs(file: string, withSourceMaps: boolean): number {
  const flags = withSourceMaps ? ["--enable-source-maps"] : [];
  const result = spawnSync(process.execPath, [...flags, "--input-type=module", "-e", IMPORT_SCRIPT, file], {
    env: { ...process.env, AWS_REGION: "us-east-1", RELAY_STAGE: "local" },
    encoding: "utf8",
  });
  const ms = Number(result.stdout);
  if (result.status !== 0 || !Number.isFinite(ms) || result.stdout === "") {
    throw new Error(`importing ${file} failed (exit ${result.status}): ${result.stderr.slice(-2000)}`);
  }
  return ms;
}

const median = (values: readonly number[]): number => {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] ?? Number.NaN;
};

export async function coldStart(baseline: string, repo: string, repeats: number): Promise<{ rows: ColdStartRow[] }> {
  const dirs = { old: buildSnapshot(baseline, "old"), new: buildSnapshot(repo, "new") };
  try {
    const names = readdirSync(dirs.new).filter((name) => existsSync(join(dirs.new, name, "index.mjs")));
    type Samples = Record<"old" | "new" | "oldMaps" | "newMaps", number[]>;
    const samples = new Map<string, Samples>();
    const bundle = (variant: "old" | "new", name: string) => join(dirs[variant], name, "index.mjs");
    const hasBaseline = (name: string) => existsSync(bundle("old", name));
    for (const name of names) {
      const own: Samples = { old: [], new: [], oldMaps: [], newMaps: [] };
      samples.set(name, own);
      for (let i = 0; i < Math.max(5, repeats * 2); i++) {
        // Interleaved old, new, old, new… so a busy machine slows both alike.
        if (hasBaseline(name)) own.old.push(importMs(bundle("old", name), false));
        own.new.push(importMs(bundle("new", name), false));
        if (hasBaseline(name)) own.oldMaps.push(importMs(bundle("old", name), true));
        own.newMaps.push(importMs(bundle("new", name), true));
      }
    }
    const rows: ColdStartRow[] = [];
    for (const name of names) {
      const own = samples.get(name) ?? { old: [], new: [], oldMaps: [], newMaps: [] };
      const comparedWith = hasBaseline(name) ? name : FALLBACK_BASELINE;
      const today = samples.get(comparedWith);
      const todayMs = median(today?.old ?? []);
      const todayMsWithSourceMaps = median(today?.oldMaps ?? []);
      if (hasBaseline(name)) {
        const bytes = statSync(bundle("old", name)).size;
        rows.push({
          variant: "old",
          name,
          bytes,
          kib: Math.round(bytes / 1024),
          importMs: todayMs,
          samples: own.old,
          importMsWithSourceMaps: todayMsWithSourceMaps,
          samplesWithSourceMaps: own.oldMaps,
        });
      }
      const bytes = statSync(bundle("new", name)).size;
      const importMsNew = median(own.new);
      const importMsNewWithSourceMaps = median(own.newMaps);
      rows.push({
        variant: "new",
        name,
        bytes,
        kib: Math.round(bytes / 1024),
        importMs: importMsNew,
        samples: own.new,
        importMsWithSourceMaps: importMsNewWithSourceMaps,
        samplesWithSourceMaps: own.newMaps,
        shareOfToday: importMsNew / todayMs,
        shareOfTodayWithSourceMaps: importMsNewWithSourceMaps / todayMsWithSourceMaps,
        comparedWith,
      });
    }
    return { rows };
  } finally {
    rmSync(dirs.old, { recursive: true, force: true });
    rmSync(dirs.new, { recursive: true, force: true });
  }
}
