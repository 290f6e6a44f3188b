import { cachedSuppression, readSuppressedDigests } from "../privacy/suppression.js";
import type { LiteRuntimeContext } from "./lite-context.js";

/**
 * The erased-ids list for an edge (intake, Currents reader), read from SNAPSHOT_BUCKET at most
 * once per SECRETS_TTL_SECONDS per container, so a new erasure (or an expired one) takes effect
 * within that time. Without SNAPSHOT_BUCKET (a stack that predates the list) there is no list.
 */
export function erasedDigestsFor(runtime: Pick<LiteRuntimeContext, "env" | "s3">): { erasedDigests?: () => Promise<ReadonlySet<string>> } {
  const bucket = runtime.env.SNAPSHOT_BUCKET;
  if (bucket === undefined) return {};
  return { erasedDigests: cachedSuppression(() => readSuppressedDigests(runtime.s3, bucket, Date.now()), runtime.env.SECRETS_TTL_SECONDS * 1000, Date.now) };
}
