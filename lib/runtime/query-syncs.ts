import { randomUUID } from "node:crypto";
import { existsSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { resolve } from "node:path";
import { requireSetting } from "../config/env.js";
import { LOCAL_STAGE } from "../config/stage.js";
import { ConfigError } from "../util/errors.js";
import { realRetryDeps } from "../http/retry.js";
import { logger } from "../observability/telemetry.js";
import { createDestinationNetwork } from "../destinations/send.js";
import { createBrevoSend } from "../forwarder/brevo.js";
import { cachedSuppression, readSuppressedDigests } from "../privacy/suppression.js";
import type { BytesStore } from "../queries/store.js";
import { createQueryStore } from "../queries/store.js";
import type { BrevoProfileSend } from "../queries/deliver.js";
import type { QueryRunDeps } from "../queries/run.js";
import { brevoClientFrom, brevoConfigOf } from "./brevo-forwarder.js";
import { type LiteRuntimeContext, rejectedStoreFor } from "./lite-context.js";

/**
 * Wiring of the query syncs inside the cohort-export function (once per container). Checked at
 * cold start, each problem naming its key: a JQL `script_file` must be in the bundle, refused
 * rows need the rejected store (REJECTED_BUCKET), and a `brevo_attributes` sync needs the
 * stage's `brevo` block (API key secret, identifiers).
 */
export function querySyncDepsFrom(
  runtime: LiteRuntimeContext,
  bytes: BytesStore,
  remainingMs: () => number,
  tickMs: number,
  projectId: () => string,
  metric: QueryRunDeps["metric"],
): QueryRunDeps {
  const { env, config } = runtime;
  const problems: string[] = [];
  config.query_syncs.forEach((sync, index) => {
    if (sync.source.type === "jql" && !existsSync(resolve(sync.source.script_file))) {
      problems.push(`query_syncs.${index}.source.script_file: ${sync.source.script_file} is not in the bundle`);
    }
    if (sync.destination.type === "brevo_attributes" && !config.brevo) {
      problems.push(`query_syncs.${index}.destination: brevo_attributes needs the stage's brevo block (api_key_secret, identifiers)`);
    }
  });
  if (problems.length > 0) throw new ConfigError(`invalid stage config: ${problems.join("; ")}`);
  const rejected = rejectedStoreFor(runtime);
  requireSetting(env, "REJECTED_BUCKET");
  let brevoClient: ReturnType<typeof brevoClientFrom> | undefined;
  const snapshotBucket = env.SNAPSHOT_BUCKET;
  const suppressed = snapshotBucket
    ? cachedSuppression(() => readSuppressedDigests(runtime.s3, snapshotBucket), env.SECRETS_TTL_SECONDS * 1000, Date.now)
    : undefined;
  return {
    store: createQueryStore(bytes),
    delivery: {
      network: createDestinationNetwork({ localStage: env.RELAY_STAGE === LOCAL_STAGE }),
      timeoutMs: env.HTTP_TIMEOUT_MS,
      retryDeps: realRetryDeps(() => remainingMs() - 30_000 - env.HTTP_TIMEOUT_MS),
      now: Date.now,
      secrets: runtime.secrets,
      warn: (message, extra) => logger.warn(message, extra ?? {}),
      projectId,
      async brevoSend(attributes): Promise<BrevoProfileSend> {
        const brevo = brevoConfigOf(runtime);
        brevoClient ??= brevoClientFrom(runtime, remainingMs);
        // The connector's contact path with the sync's attributes as its property mapping; no company links.
        return createBrevoSend({
          client: brevoClient,
          config: { ...brevo, property_mapping: { ...attributes }, sync: { ...brevo.sync, groups: false } },
          identityMode: config.identity_mode,
          eventsBatchSize: env.BREVO_EVENTS_BATCH_SIZE,
          ...(suppressed ? { suppressed } : {}),
        });
      },
    },
    readScript: (path) => readFile(resolve(path), "utf8"),
    async storeRejected(sync, runId, rows) {
      await rejected.put({
        source: `query-sync/${sync.id}`,
        correlationId: runId,
        stageOfFailure: "reader",
        items: rows.map((row) => ({ index: Math.max(0, row.index), code: row.code, reason: row.reason, payload: row.payload })),
      });
    },
    metric,
    log: {
      info: (message, extra) => logger.info(message, extra ?? {}),
      error: (message, extra) => logger.error(message, extra ?? {}),
    },
    now: Date.now,
    newId: randomUUID,
    tickMs,
  };
}
