/**
 * Operator CLI for query syncs (`query_syncs` in the stage config).
 *
 *   npm run queries:run -- --stage <stage> --id <id> [--dry-run]
 *
 * Runs one query sync now (even a disabled one, or one that is not due) in one cohort-export
 * invocation, which holds the schedule and the Query API budget shared with cohort export
 * (Mixpanel: 60 queries per hour per project). Only that sync runs; cohort syncs wait for
 * their own tick. `--dry-run` prints the rows that would be sent and the rows that would be
 * refused, and sends, stores and stamps nothing. On `--stage local` it calls the running
 * `npm start` (LOCAL_STACK_URL, default http://127.0.0.1:$PORT or 3000); on a deployed stage it
 * invokes the stage's cohort-export function with `osls invoke` (AWS credentials of the shell).
 */
import { spawnSync } from "node:child_process";
import { resolve } from "node:path";
import { pathToFileURL } from "node:url";
import * as z from "zod";
import { LOCAL_STAGE } from "../lib/config/stage.js";
import { describeError } from "../lib/util/errors.js";
import { queryRunReportSchema } from "../lib/queries/store.js";
import { parseJsonWith } from "../lib/util/json.js";
import * as zm from "../lib/util/zod.js";
import { LOCAL_COHORT_EXPORT_PATH } from "./local/cohorts.js";
import { UsageError, parseArgs } from "./cli-args.js";

// A tick's report of one query sync: the stored run's counters, plus a dry run's samples.
const queryReportSchema = zm.extend(zm.pick(queryRunReportSchema, { rows_read: true, sent: true, unchanged: true, rejected: true, not_delivered: true, queries: true, detail: true }), {
  outcome: z.string(),
  would_send: z.object({ count: z.number(), rows: z.array(z.object({ key: z.string(), values: z.record(z.string(), z.unknown()) })) }).optional(),
  would_reject: z.array(z.object({ index: z.number(), code: z.string(), reason: z.string() })).optional(),
});
const tickReportSchema = z.object({
  queries: z.number(),
  budgetLeft: z.number(),
  querySyncs: z.record(z.string(), queryReportSchema).optional(),
});
export type QueryCliReport = z.infer<typeof queryReportSchema>;

export interface QueryRunInput {
  query_syncs: { force: string[]; dry_run: boolean; only: true };
}
export type InvokeExport = (input: QueryRunInput) => Promise<unknown>;

/** The lines printed for one run (pure). */
export function describeQueryRun(id: string, report: QueryCliReport, budgetLeft: number): string[] {
  const lines = [
    `query sync ${id}: ${report.outcome}; ${report.rows_read} row(s) read, ${report.sent} sent, ${report.unchanged} unchanged, ${report.rejected} rejected, ${report.not_delivered} not delivered; Query API calls ${report.queries} (${budgetLeft} left this tick)`,
  ];
  if (report.detail) lines.push(`  ${report.detail}`);
  if (report.would_send) {
    lines.push(`  would send ${report.would_send.count} row(s)${report.would_send.count > report.would_send.rows.length ? ` (first ${report.would_send.rows.length} shown)` : ""}:`);
    for (const row of report.would_send.rows) lines.push(`    ${JSON.stringify(row.key)} ${JSON.stringify(row.values)}`);
  }
  for (const refusal of report.would_reject ?? []) lines.push(`  would reject row ${refusal.index}: ${refusal.code}: ${refusal.reason}`);
  return lines;
}

export async function runQueryNow(invoke: InvokeExport, id: string, dryRun: boolean, print: (line: string) => void): Promise<string> {
  const raw = await invoke({ query_syncs: { force: [id], dry_run: dryRun, only: true } });
  const parsed = tickReportSchema.safeParse(raw);
  if (!parsed.success) throw new Error(`cohort-export returned an unexpected report: ${JSON.stringify(raw).slice(0, 300)}`);
  const report = parsed.data.querySyncs?.[id];
  if (!report) throw new UsageError(`query sync "${id}" is not in the stage's config (or the function runs an older bundle)`);
  for (const line of describeQueryRun(id, report, parsed.data.budgetLeft)) print(line);
  return report.outcome;
}

function localInvoke(baseUrl: string): InvokeExport {
  return async (input) => {
    const url = `${baseUrl.replace(/\/+$/, "")}${LOCAL_COHORT_EXPORT_PATH}`;
    const response = await fetch(url, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(input), redirect: "manual" }).catch(
      (error: unknown) => {
        throw new Error(`cannot reach the local stack at ${url} (is \`npm start\` running? set LOCAL_STACK_URL or PORT): ${describeError(error)}`);
      },
    );
    const text = await response.text();
    if (response.status !== 200) throw new Error(`local stack answered ${response.status}: ${text.slice(0, 300)}`);
    const parsed = parseJsonWith(z.unknown(), text);
    return parsed.success ? parsed.data : undefined;
  };
}

function deployedInvoke(stage: string): InvokeExport {
  return async (input) => {
    const result = spawnSync("npx", ["osls", "invoke", "-f", "cohort-export", "--stage", stage, "--data", JSON.stringify(input)], {
      encoding: "utf8",
      stdio: ["ignore", "pipe", "inherit"],
    });
    if (result.status !== 0) throw new Error(`osls invoke failed (exit ${result.status ?? "?"})`);
    const parsed = parseJsonWith(z.unknown(), result.stdout.slice(result.stdout.indexOf("{")));
    return parsed.success ? parsed.data : undefined;
  };
}

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  if (command !== "run") throw new UsageError("usage: queries-cli run --stage <stage> --id <id> [--dry-run]");
  const { values } = parseArgs({
    args: rest,
    options: { stage: { type: "string", short: "s" }, id: { type: "string" }, "dry-run": { type: "boolean" } },
    strict: true,
  });
  const stage = values.stage ?? process.env.RELAY_STAGE;
  if (!stage) throw new UsageError("--stage is required");
  if (!values.id) throw new UsageError("--id <query sync id> is required");
  const invoke = stage === LOCAL_STAGE ? localInvoke(process.env.LOCAL_STACK_URL ?? `http://127.0.0.1:${process.env.PORT ?? "3000"}`) : deployedInvoke(stage);
  const outcome = await runQueryNow(invoke, values.id, values["dry-run"] === true, (line) => process.stdout.write(`${line}\n`));
  return outcome === "delivered" || outcome === "dry_run" ? 0 : 1;
}

if (process.argv[1] && import.meta.url === pathToFileURL(resolve(process.argv[1])).href) {
  main(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (error: unknown) => {
      process.stderr.write(`queries-cli: ${describeError(error)}\n`);
      process.exit(error instanceof UsageError ? 2 : 1);
    },
  );
}
