import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { LOCAL_MIXPANEL_CREDENTIALS, startLocalStack } from "../../infra/local/stack.js";

/**
 * The local stack (the real intake handler, fauxqs, the sandbox) in a process of its own, for
 * tests that watch its memory or must see it survive: run as
 * `node --max-old-space-size=N --import tsx test/support/intake-child.ts`. It prints one JSON
 * line with its intake URL and token once it listens, and stops on SIGTERM or when its parent
 * closes stdin.
 */
const dir = mkdtempSync(join(tmpdir(), "relay-intake-child-"));
const configFile = join(dir, "config.json");
writeFileSync(configFile, JSON.stringify({ mixpanel_compat: { project_tokens: [LOCAL_MIXPANEL_CREDENTIALS.projectToken], cors_origins: [] } }));
const stack = await startLocalStack({ configFile, intakePort: 0, visibilityTimeoutSeconds: 2 });
process.stdout.write(`${JSON.stringify({ intakeUrl: stack.intakeUrl, intakeToken: stack.intakeToken, pid: process.pid })}\n`);

let stopping = false;
async function stop(): Promise<void> {
  if (stopping) return;
  stopping = true;
  await stack.stop();
  rmSync(dir, { recursive: true, force: true });
  process.exit(0);
}
process.on("SIGTERM", () => void stop());
process.stdin.on("end", () => void stop());
process.stdin.resume();
