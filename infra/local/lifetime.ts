import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, readdirSync, rmSync } from "node:fs";
import { join } from "node:path";

/**
 * How long `npm start` lives. `npm start` is a chain of processes (npm → sh → tsx → node): a
 * signal or a crash can end npm without the rest, and a SIGKILL cannot be caught at all, so the
 * node process that holds the ports watches the chain that launched it and stops when any link
 * is gone. The chain is its ancestors in its own process group: a terminal puts `npm start` in a
 * group of its own (npm leads it), so the user's shell is not watched and `nohup npm start &`
 * still outlives the shell.
 */

interface ProcessLink {
  readonly pid: number;
  readonly ppid: number;
  readonly pgid: number;
}

/** `pid`'s parent and process group: /proc on Linux, `ps` elsewhere; undefined when it is gone. */
export function processLink(pid: number): ProcessLink | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // "pid (comm) state ppid pgrp …"; comm may hold spaces and parentheses.
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return { pid, ppid: Number(fields[1]), pgid: Number(fields[2]) };
  } catch {
    // no /proc (macOS) or the process is gone
  }
  try {
    const [ppid, pgid] = execFileSync("ps", ["-o", "ppid=,pgid=", "-p", String(pid)], { encoding: "utf8" }).trim().split(/\s+/).map(Number);
    return ppid !== undefined && pgid !== undefined && Number.isSafeInteger(ppid) && Number.isSafeInteger(pgid) ? { pid, ppid, pgid } : undefined;
  } catch {
    return undefined;
  }
}

/** The ancestors of `pid` in its process group, nearest first (at most `maxDepth`). */
export function launchChain(pid: number, lookup: (pid: number) => ProcessLink | undefined = processLink, maxDepth = 16): number[] {
  const own = lookup(pid);
  if (!own) return [];
  const chain: number[] = [];
  let link: ProcessLink | undefined = own;
  while (chain.length < maxDepth && link && link.ppid > 1) {
    const parent = lookup(link.ppid);
    if (!parent || parent.pgid !== own.pgid) break;
    chain.push(parent.pid);
    link = parent;
  }
  return chain;
}

/**
 * Calls `onGone` once when a process of the launch chain ends (its child is re-parented, so the
 * chain read again differs). Comparing chains rather than probing PIDs is immune to PID reuse.
 */
export function watchLaunchChain(options: {
  readonly pid: number;
  readonly intervalMs: number;
  readonly onGone: (gone: number[]) => void;
  readonly lookup?: (pid: number) => ProcessLink | undefined;
}): { readonly chain: readonly number[]; stop(): void } {
  const lookup = options.lookup ?? processLink;
  const chain = launchChain(options.pid, lookup);
  const timer = setInterval(() => {
    const now = launchChain(options.pid, lookup);
    const gone = chain.filter((pid) => !now.includes(pid));
    if (gone.length > 0) {
      clearInterval(timer);
      options.onGone(gone);
    }
  }, options.intervalMs);
  timer.unref();
  return { chain, stop: () => clearInterval(timer) };
}

/** Whether a process with this PID exists (EPERM: it exists but belongs to someone else). */
export function isProcessAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
}

/** Temporary config copies are named after the PID that wrote them, so a later start can remove orphans. */
const CONFIG_COPY_PREFIX = "relay-local-config-";

export function makeConfigCopyDir(tmp: string, pid: number): string {
  return mkdtempSync(join(tmp, `${CONFIG_COPY_PREFIX}${pid}-`));
}

/** Removes config copies left by stacks that died without cleaning up; answers the directories removed. */
export function removeOrphanedConfigCopies(tmp: string, isAlive: (pid: number) => boolean = isProcessAlive): string[] {
  let names: string[];
  try {
    names = readdirSync(tmp);
  } catch {
    return [];
  }
  const removed: string[] = [];
  for (const name of names) {
    const match = name.startsWith(CONFIG_COPY_PREFIX) ? /^(\d+)-/.exec(name.slice(CONFIG_COPY_PREFIX.length)) : null;
    if (!match || isAlive(Number(match[1]))) continue;
    rmSync(join(tmp, name), { recursive: true, force: true });
    removed.push(join(tmp, name));
  }
  return removed;
}
