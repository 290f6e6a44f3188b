import { mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import * as z from "zod";
import { parseJsonWith } from "../../lib/util/json.js";

/**
 * Where `npm start` announces its endpoints, so the operator commands
 * (`npm run status|trace|redrive|replay -- --stage local`) reach the running
 * local stack without being told its ports. Deleted when the stack stops.
 */
export const DEFAULT_LOCAL_STACK_FILE = resolve(dirname(fileURLToPath(import.meta.url)), "../../.local/stack.json");

export const localStackFileSchema = z.object({
  stage: z.string().min(1),
  region: z.string().min(1),
  awsEndpoint: z.url(),
  intakeUrl: z.url(),
  /** The local Mixpanel sandbox (absent when MIXPANEL_API_URL points elsewhere): `npm run lookup:* -- --stage local`. */
  mixpanelUrl: z.optional(z.url()),
  /** The local Brevo sandbox's /v3 base (absent when BREVO_API_URL points elsewhere): `npm run gdpr:delete -- --stage local`. */
  brevoUrl: z.optional(z.url()),
  pid: z.number().int(),
});
export type LocalStackFile = z.infer<typeof localStackFileSchema>;

export function localStackFilePath(env: NodeJS.ProcessEnv): string {
  return env.RELAY_LOCAL_STACK_FILE ?? DEFAULT_LOCAL_STACK_FILE;
}

export function writeLocalStackFile(path: string, content: LocalStackFile): void {
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, `${JSON.stringify(content, null, 2)}\n`);
}

export function removeLocalStackFile(path: string): void {
  rmSync(path, { force: true });
}

/** The running local stack's endpoints, or undefined when none is announced (or the file is unreadable). */
export function readLocalStackFile(path: string): LocalStackFile | undefined {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch {
    return undefined;
  }
  const parsed = parseJsonWith(localStackFileSchema, text);
  return parsed.success ? parsed.data : undefined;
}

/**
 * What a start finds in the stack file: nothing, a stack that is still running, or a stale
 * announcement from a stack that ended without removing it (a crash, a SIGKILL).
 */
export type PreviousStack =
  | { readonly kind: "none" }
  | { readonly kind: "running"; readonly file: LocalStackFile }
  | { readonly kind: "stale"; readonly file: LocalStackFile }
  | { readonly kind: "unreadable" };

export function previousStack(path: string, isAlive: (pid: number) => boolean): PreviousStack {
  let exists = true;
  try {
    readFileSync(path);
  } catch {
    exists = false;
  }
  if (!exists) return { kind: "none" };
  const file = readLocalStackFile(path);
  if (!file) return { kind: "unreadable" };
  return isAlive(file.pid) ? { kind: "running", file } : { kind: "stale", file };
}

/** Removes the stack file only while it still announces `pid` (a newer stack may have replaced it). */
export function removeLocalStackFileOf(path: string, pid: number): void {
  if (readLocalStackFile(path)?.pid === pid) removeLocalStackFile(path);
}
