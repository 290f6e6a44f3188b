import type { Env } from "../config/env.js";
import type { StageConfig } from "../config/stage.js";
import { ConfigError } from "../util/errors.js";
import type { SecretReader } from "../secrets/secrets.js";
import { renamed } from "../util/renames.js";
import { needsHashKey, piiKeySecretSchema } from "../config/pii.js";
import { type PiiPolicy, createPiiPolicy } from "./policy.js";

export type PiiPolicySource = () => Promise<PiiPolicy | undefined>;

/**
 * The stage's PII policy with its hash key: from the `pii.hash_key_secret` secret (cached by the
 * secret reader's TTL), else from env PII_HASH_KEY (the local stack). Undefined when the stage
 * has no `pii` rules. Throws (a 503 at intake, a retry in the reader) when the key cannot be read:
 * records are never queued unprotected.
 */
export function piiPolicySource(config: StageConfig, env: Pick<Env, "PII_HASH_KEY">, secrets: SecretReader): PiiPolicySource {
  const pii = config.pii;
  // How a sender's names become the Mixpanel names the rules use (Braze's prefixes are the policy's own).
  const aliases = [(name: string) => renamed(name, config.property_mapping)];
  const aliasedNames = Object.keys(config.property_mapping);
  if (!needsHashKey(pii)) {
    const policy = createPiiPolicy(pii, undefined, aliases, aliasedNames);
    return async () => policy;
  }
  const secretId = pii?.hash_key_secret;
  if (secretId) return async () => createPiiPolicy(pii, (await secrets.getJson(secretId, piiKeySecretSchema)).key, aliases, aliasedNames);
  const key = env.PII_HASH_KEY;
  return async () => {
    if (key === undefined) throw new ConfigError("pii: hash rules need a key: set pii.hash_key_secret, or PII_HASH_KEY locally");
    return createPiiPolicy(pii, key, aliases, aliasedNames);
  };
}
