import { execFileSync, spawn } from "node:child_process";
import { cpSync, existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { CreateBucketCommand, S3Client } from "@aws-sdk/client-s3";
import { CreateQueueCommand, SQSClient } from "@aws-sdk/client-sqs";
import { startLocalAws } from "../support/fauxqs.js";

/**
 * Bundles both trees with their own infra/build.ts (esbuild, minified, as deployed), then
 * times, in a fresh Node process per sample, what a Lambda cold start pays before its first
 * AWS call is answered: `await import()` of the function's bundle plus one invocation of its
 * handler with an event whose work is that call (test/bench/cold-start-invoke.mjs), against a
 * fauxqs server (SQS + S3) this process runs. Every sample runs with `--enable-source-maps`, the
 * NODE_OPTIONS serverless.yml gives every function, under which Node also reads and parses the
 * source map of each module file it loads. Old and new alternate; medians are reported, of the
 * wall time and of the child's CPU time (a busy machine disturbs the second less).
 *
 * The Node that runs the samples is BENCH_COLD_NODE (default: this process's), so the figures
 * can be taken on Lambda's runtime (nodejs24.x) from a machine whose default Node is older.
 *
 * Each tree's dist/ is copied to a private directory right after its build, so another run
 * building the shared baseline checkout at the same time cannot swap files mid-timing.
 */
export interface ColdStartRow {
  readonly variant: "old" | "new";
  readonly name: string;
  /** The function's files Lambda loads: index.mjs and every chunk (chunks load on first use). */
  readonly kib: number;
  readonly bytes: number;
  /** index.mjs alone (plus, for the new tree, the chunks it imports statically). */
  readonly startupKib: number;
  readonly importMs: number;
  /** import + the first AWS call (median wall time, with --enable-source-maps). */
  readonly coldMs: number;
  readonly coldCpuMs: number;
  readonly samples: number[];
  readonly cpuSamples: number[];
  /** new rows: median as a share of the baseline's (same run). */
  readonly shareOfBaseline?: number;
  readonly cpuShareOfBaseline?: number;
}

/** What each function's first AWS call is in this measurement (test/bench/cold-start-invoke.mjs). */
export const FIRST_CALL: Record<string, string> = {
  intake: "SQS SendMessageBatch (1 event, events + Brevo queues)",
  forwarder: "S3 PutObject (rejected store, unreadable message)",
  "brevo-forwarder": "S3 PutObject (rejected store, unreadable message)",
  "webhook-delivery": "none: a message that is not a page goes back to SQS (its DLQ after maxReceiveCount)",
  "currents-reader": "S3 GetObject (a file that is gone)",
  "cohort-export": "none: a tick of a stage without syncs (import + tick)",
};

function buildSnapshot(root: string, label: string): string {
  execFileSync(process.execPath, ["--import", "tsx", "infra/build.ts"], { cwd: root, stdio: "ignore" });
  const snapshot = mkdtempSync(join(tmpdir(), `relay-coldstart-${label}-`));
  cpSync(join(root, "dist"), snapshot, { recursive: true });
  return snapshot;
}

interface Sample {
  readonly importMs: number;
  readonly coldMs: number;
  readonly cpuMs: number;
}

function invokeCold(node: string, bundle: string, name: string, env: NodeJS.ProcessEnv): Promise<Sample> {
  const script = resolve(import.meta.dirname, "cold-start-invoke.mjs");
  return new Promise((done, fail) => {
    // Asynchronous: fauxqs answers from this process's event loop.
    const child = spawn(node, ["--enable-source-maps", script, bundle, name], { env, stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    let err = "";
    child.stdout.on("data", (chunk: Buffer) => (out += chunk.toString()));
    child.stderr.on("data", (chunk: Buffer) => (err += chunk.toString()));
    const timer = setTimeout(() => child.kill("SIGKILL"), 60_000);
    child.on("close", (code) => {
      clearTimeout(timer);
      const read = (label: string) => Number(new RegExp(`^${label} ([\\d.]+)$`, "m").exec(out)?.[1]);
      const sample = { importMs: read("IMPORT"), coldMs: read("COLD"), cpuMs: read("CPU") };
      if (code !== 0 || !Number.isFinite(sample.coldMs)) fail(new Error(`cold start of ${bundle} failed (exit ${code}): ${err.slice(-2000)} ${out.slice(-500)}`));
      else done(sample);
    });
  });
}

const median = (values: readonly number[]): number => {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] ?? Number.NaN;
};

/** Bytes of index.mjs and of the chunks it imports statically (what a cold start reads before the handler runs). */
function startupBytes(dir: string): number {
  const seen = new Set<string>();
  const visit = (file: string): number => {
    if (seen.has(file)) return 0;
    seen.add(file);
    const text = readFileSync(join(dir, file), "utf8");
    let bytes = Buffer.byteLength(text);
    for (const match of text.matchAll(/(?:^|[;}\s])(?:import|export)\s*(?:[^"'()]*?from\s*)?["']\.\/(chunk-[\w-]+\.mjs)["']/g)) bytes += visit(match[1] ?? "");
    return bytes;
  };
  return visit("index.mjs");
}

function totalBytes(dir: string): number {
  return readdirSync(dir)
    .filter((file) => file.endsWith(".mjs"))
    .reduce((sum, file) => sum + statSync(join(dir, file)).size, 0);
}

export async function coldStart(baseline: string, repo: string, repeats: number): Promise<{ node: string; firstCall: Record<string, string>; rows: ColdStartRow[] }> {
  const node = process.env.BENCH_COLD_NODE ?? process.execPath;
  const nodeVersion = execFileSync(node, ["--version"], { encoding: "utf8" }).trim();
  const dirs = { old: buildSnapshot(baseline, "old"), new: buildSnapshot(repo, "new") };
  const aws = await startLocalAws();
  const credentials = { accessKeyId: "bench", secretAccessKey: "bench" };
  const sqs = new SQSClient({ region: "us-east-1", endpoint: aws.address, credentials });
  const s3 = new S3Client({ region: "us-east-1", endpoint: aws.address, forcePathStyle: true, credentials });
  const queue = async (name: string) => (await sqs.send(new CreateQueueCommand({ QueueName: name }))).QueueUrl ?? "";
  for (const bucket of ["bench-rejected", "bench-snapshots", "bench-currents"]) await s3.send(new CreateBucketCommand({ Bucket: bucket }));
  // Each tree reads its own stage config (the baseline's schema refuses keys added since); the
  // cohort export gets the same config without cohort syncs, query syncs or lookup tables, so its
  // tick calls no Mixpanel API.
  const configs = new Map<string, string>();
  const configFor = (root: string, name: string): string => {
    const source = join(root, "config/local.json");
    if (name !== "cohort-export") return source;
    let file = configs.get(root);
    if (!file) {
      file = join(mkdtempSync(join(tmpdir(), "relay-coldstart-config-")), "local.json");
      const config = JSON.parse(readFileSync(source, "utf8")) as Record<string, unknown>;
      // Only the keys a tree's schema knows: the baseline has no query syncs or lookup tables.
      for (const key of ["cohort_syncs", "query_syncs", "lookup_tables"]) if (key in config || key === "cohort_syncs") config[key] = [];
      writeFileSync(file, JSON.stringify(config));
      configs.set(root, file);
    }
    return file;
  };
  const env: NodeJS.ProcessEnv = {
    PATH: process.env.PATH,
    AWS_REGION: "us-east-1",
    AWS_ENDPOINT_URL: aws.address,
    AWS_ACCESS_KEY_ID: "bench",
    AWS_SECRET_ACCESS_KEY: "bench",
    AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: "true",
    RELAY_STAGE: "local",
    EVENTS_QUEUE_URL: await queue("events"),
    EVENTS_DLQ_URL: await queue("events-dlq"),
    BREVO_QUEUE_URL: await queue("brevo"),
    BREVO_DLQ_URL: await queue("brevo-dlq"),
    DELIVERIES_QUEUE_URL: await queue("deliveries"),
    DELIVERIES_DLQ_URL: await queue("deliveries-dlq"),
    REJECTED_BUCKET: "bench-rejected",
    SNAPSHOT_BUCKET: "bench-snapshots",
    CURRENTS_BUCKET: "bench-currents",
    INTAKE_TOKEN: "bench-intake-token-0001",
    BREVO_API_KEY: "bench",
    MIXPANEL_PROJECT_ID: "1",
    MIXPANEL_PROJECT_TOKEN: "bench",
    MIXPANEL_SERVICE_ACCOUNT_USERNAME: "bench",
    MIXPANEL_SERVICE_ACCOUNT_SECRET: "bench",
    MIXPANEL_API_URL: "http://127.0.0.1:9",
    MIXPANEL_QUERY_URL: "http://127.0.0.1:9",
    COHORT_EXPORT_TICK_MS: "60000",
    POWERTOOLS_METRICS_DISABLED: "true",
    POWERTOOLS_LOG_LEVEL: "ERROR",
  };
  try {
    const names = readdirSync(dirs.new).filter((name) => existsSync(join(dirs.new, name, "index.mjs")));
    const bundle = (variant: "old" | "new", name: string) => join(dirs[variant], name, "index.mjs");
    const rows: ColdStartRow[] = [];
    for (const name of names) {
      const samples: Record<"old" | "new", Sample[]> = { old: [], new: [] };
      const hasBaseline = existsSync(bundle("old", name));
      for (let i = 0; i < Math.max(7, repeats * 3); i++) {
        // Interleaved old, new, old, new… so a busy machine slows both alike.
        if (hasBaseline) samples.old.push(await invokeCold(node, bundle("old", name), name, { ...env, RELAY_CONFIG_FILE: configFor(baseline, name) }));
        samples.new.push(await invokeCold(node, bundle("new", name), name, { ...env, RELAY_CONFIG_FILE: configFor(repo, name) }));
      }
      const summary = (variant: "old" | "new") => {
        const dir = join(dirs[variant], name);
        const bytes = totalBytes(dir);
        const list = samples[variant];
        return {
          variant,
          name,
          bytes,
          kib: Math.round(bytes / 1024),
          startupKib: Math.round(startupBytes(dir) / 1024),
          importMs: median(list.map((s) => s.importMs)),
          coldMs: median(list.map((s) => s.coldMs)),
          coldCpuMs: median(list.map((s) => s.cpuMs)),
          samples: list.map((s) => Math.round(s.coldMs * 10) / 10),
          cpuSamples: list.map((s) => Math.round(s.cpuMs * 10) / 10),
        };
      };
      const newRow = summary("new");
      if (hasBaseline) {
        const oldRow = summary("old");
        rows.push(oldRow);
        rows.push({ ...newRow, shareOfBaseline: newRow.coldMs / oldRow.coldMs, cpuShareOfBaseline: newRow.coldCpuMs / oldRow.coldCpuMs });
      } else {
        rows.push(newRow);
      }
      console.error(`cold start ${name}: ${rows.slice(-2).map((r) => `${r.variant} ${r.coldMs.toFixed(0)} ms (${r.coldCpuMs.toFixed(0)} CPU-ms)`).join(", ")}`);
    }
    return { node: nodeVersion, firstCall: FIRST_CALL, rows };
  } finally {
    sqs.destroy();
    s3.destroy();
    await aws.stop();
    rmSync(dirs.old, { recursive: true, force: true });
    rmSync(dirs.new, { recursive: true, force: true });
    for (const file of configs.values()) rmSync(join(file, ".."), { recursive: true, force: true });
  }
}
