import { execFileSync, spawnSync } from "node:child_process";
import { readdirSync, statSync } from "node:fs";
import { join } from "node:path";

/**
 * Bundles both trees with their own infra/build.ts (esbuild, minified, as deployed), then
 * times `await import()` of each function's bundle in a fresh Node process: module
 * evaluation plus compile, which is what a Lambda cold start pays before the handler runs.
 * Old and new alternate, `repeats` times each; the median is reported.
 */
export interface ColdStartRow {
  readonly variant: "old" | "new";
  readonly name: string;
  readonly kib: number;
  readonly importMs: number;
  readonly samples: number[];
}

function build(root: string): void {
  execFileSync(process.execPath, ["--import", "tsx", "infra/build.ts"], { cwd: root, stdio: "ignore" });
}

const IMPORT_SCRIPT = `const t=performance.now();await import(process.argv[1]);process.stdout.write(String(performance.now()-t));`;

function importMs(file: string): number {
  const result = spawnSync(process.execPath, ["--input-type=module", "-e", IMPORT_SCRIPT, file], {
    env: { ...process.env, AWS_REGION: "us-east-1", RELAY_STAGE: "local" },
    encoding: "utf8",
  });
  return Number(result.stdout);
}

export async function coldStart(baseline: string, repo: string, repeats: number): Promise<{ rows: ColdStartRow[] }> {
  build(baseline);
  build(repo);
  const names = readdirSync(join(repo, "dist"));
  const rows: ColdStartRow[] = [];
  for (const name of names) {
    const samples: Record<"old" | "new", number[]> = { old: [], new: [] };
    const files = { old: join(baseline, "dist", name, "index.mjs"), new: join(repo, "dist", name, "index.mjs") };
    for (let i = 0; i < Math.max(5, repeats * 2); i++) {
      for (const variant of ["old", "new"] as const) samples[variant].push(importMs(files[variant]));
    }
    for (const variant of ["old", "new"] as const) {
      const sorted = [...samples[variant]].sort((a, b) => a - b);
      rows.push({
        variant,
        name,
        kib: Math.round(statSync(files[variant]).size / 1024),
        importMs: sorted[Math.floor(sorted.length / 2)] ?? Number.NaN,
        samples: samples[variant],
      });
    }
  }
  return { rows };
}
