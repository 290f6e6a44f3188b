import { loadStageConfig, stageConfigPath } from "../../lib/config/stage.js";
import type { ImportFormat } from "../../lib/import/read-rows.js";
import { runImport } from "../../lib/import/run.js";

/**
 * One dry-run import of IMPORT_MEMORY_FILE (format IMPORT_MEMORY_FORMAT) in a process of its
 * own, for import-memory.test.ts: prints RESULT {…} with the rows read, the resident set size
 * once everything is loaded, and the process's peak resident set size.
 */
const path = process.env.IMPORT_MEMORY_FILE ?? "";
const format = (process.env.IMPORT_MEMORY_FORMAT ?? "ndjson") as ImportFormat;
const config = loadStageConfig(stageConfigPath("local"), "local");
const loadedRssMb = process.memoryUsage().rss / 2 ** 20;
const report = await runImport(
  { files: [{ ref: { kind: "local", path }, format }], kind: "events", source: "native", columns: {}, filter: {}, dryRun: true, batchRows: 2_000, resume: false, runKey: "memory" },
  { config, policy: undefined, nowMs: Date.now, log: () => undefined },
);
process.stdout.write(
  `RESULT ${JSON.stringify({ read: report.read, accepted: report.accepted, failed: report.files[0]?.failed ?? null, loadedRssMb, peakRssMb: process.resourceUsage().maxRSS / 1024 })}\n`,
);
