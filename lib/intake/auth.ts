import { hash, timingSafeEqual } from "node:crypto";
import * as z from "../util/zod.js";
import type { Env } from "../config/env.js";
import { ConfigError } from "../util/errors.js";
import type { SecretReader } from "../secrets/secrets.js";

/** Intake tokens secret: `{"tokens": ["…", "…"]}` (several, so tokens can be rotated without downtime). */
export const intakeTokensSecretSchema = z.object({ tokens: z.array(z.string().check(z.minLength(16))).check(z.minLength(1)) });

export type TokenSource = () => Promise<readonly string[]>;

export function intakeTokenSource(env: Env, secrets: SecretReader): TokenSource {
  const secretId = env.INTAKE_TOKEN_SECRET_ID;
  if (secretId) return async () => (await secrets.getJson(secretId, intakeTokensSecretSchema)).tokens;
  const local = (env.INTAKE_TOKEN ?? "")
    .split(",")
    .map((token) => token.trim())
    .filter((token) => token !== "");
  return async () => {
    if (local.length === 0) throw new ConfigError("no intake token configured: set INTAKE_TOKEN_SECRET_ID or INTAKE_TOKEN");
    return local;
  };
}

/**
 * Reads `Authorization: Bearer <token>`. Braze may switch to a custom RFC 7235
 * scheme later (docs/vendors/braze-currents.md §1), so parse defensively: scheme
 * case-insensitive, surrounding spaces ignored.
 */
export function bearerToken(header: string | undefined): string | undefined {
  if (!header) return undefined;
  const match = /^\s*bearer\s+(\S+)\s*$/i.exec(header);
  return match?.[1];
}

const digest = (value: string): Buffer => hash("sha256", value, "buffer");

/**
 * Digests of the configured tokens, kept per container: they change only when the secret does, and
 * hashing them again on every request was a visible part of a one-event request's CPU in
 * profiles. Bounded, so a rotation that keeps adding tokens cannot grow it without limit.
 */
const acceptedDigests = new Map<string, Buffer>();
const MAX_CACHED_DIGESTS = 64;

function acceptedDigest(token: string): Buffer {
  const cached = acceptedDigests.get(token);
  if (cached) return cached;
  const computed = digest(token);
  if (acceptedDigests.size >= MAX_CACHED_DIGESTS) acceptedDigests.clear();
  acceptedDigests.set(token, computed);
  return computed;
}

/** Constant-time comparison against every configured token (hashing first equalises lengths). */
export function tokenMatches(presented: string, accepted: readonly string[]): boolean {
  const presentedDigest = digest(presented);
  let matched = false;
  for (const token of accepted) {
    if (timingSafeEqual(presentedDigest, acceptedDigest(token))) matched = true;
  }
  return matched;
}
