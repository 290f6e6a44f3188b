import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { launchChain, removeOrphanedConfigCopies, watchLaunchChain } from "../../infra/local/lifetime.js";
import { previousStack, readLocalStackFile, removeLocalStackFileOf, writeLocalStackFile } from "../../infra/local/stack-file.js";

const scratch = mkdtempSync(join(tmpdir(), "relay-lifetime-"));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

/** A PID that no process has: one that just exited. */
function deadPid(): number {
  const child = spawnSync(process.execPath, ["-e", ""]);
  return child.pid ?? 999_999;
}

describe("the launch chain", () => {
  // pid → [ppid, pgid]: a terminal's shell (group 10), npm leading group 20, sh, tsx, node.
  const table: Record<number, [number, number]> = { 10: [1, 10], 20: [10, 20], 21: [20, 20], 22: [21, 20], 23: [22, 20] };
  const lookup = (pid: number) => (table[pid] ? { pid, ppid: table[pid][0], pgid: table[pid][1] } : undefined);

  it("is the ancestors in the node process's own group, nearest first: not the user's shell", () => {
    expect(launchChain(23, lookup)).toEqual([22, 21, 20]);
  });

  it("reports the links that ended, once, when npm dies and its children are re-parented", async () => {
    const reports: number[][] = [];
    const watch = watchLaunchChain({ pid: 23, intervalMs: 5, lookup, onGone: (gone) => reports.push(gone) });
    expect(watch.chain).toEqual([22, 21, 20]);
    delete table[20];
    table[21] = [1, 20];
    await new Promise((resolve) => setTimeout(resolve, 50));
    watch.stop();
    expect(reports).toEqual([[20]]);
  });
});

describe("what a crashed stack leaves behind", () => {
  it("a stack file naming a dead PID is stale, one naming a live PID is running, and only its owner removes it", () => {
    const path = join(scratch, "stack.json");
    expect(previousStack(path, () => true)).toEqual({ kind: "none" });
    const announced = { stage: "local", region: "us-east-1", awsEndpoint: "http://127.0.0.1:1", intakeUrl: "http://127.0.0.1:2", pid: 4242 };
    writeLocalStackFile(path, announced);
    expect(previousStack(path, () => false)).toEqual({ kind: "stale", file: announced });
    expect(previousStack(path, () => true)).toEqual({ kind: "running", file: announced });
    removeLocalStackFileOf(path, 4243);
    expect(existsSync(path)).toBe(true);
    removeLocalStackFileOf(path, 4242);
    expect(existsSync(path)).toBe(false);
    writeFileSync(path, "{");
    expect(previousStack(path, () => true)).toEqual({ kind: "unreadable" });
  });

  it("config copies of dead stacks are removed, those of live ones and foreign directories kept", () => {
    const tmp = join(scratch, "tmp-copies");
    for (const name of ["relay-local-config-111-abc", "relay-local-config-222-def", "relay-local-config-xyz", "other-333-x"]) mkdirSync(join(tmp, name), { recursive: true });
    const removed = removeOrphanedConfigCopies(tmp, (pid) => pid === 222);
    expect(removed).toEqual([join(tmp, "relay-local-config-111-abc")]);
    expect(readdirSync(tmp).sort()).toEqual(["other-333-x", "relay-local-config-222-def", "relay-local-config-xyz"]);
  });
});

async function freePorts(count: number): Promise<number[]> {
  const servers = await Promise.all(
    Array.from({ length: count }, () => new Promise<ReturnType<typeof createServer>>((resolve) => {
      const server = createServer();
      server.listen(0, "127.0.0.1", () => resolve(server));
    })),
  );
  const ports = servers.map((server) => (server.address() as { port: number }).port);
  await Promise.all(servers.map((server) => new Promise((resolve) => server.close(resolve))));
  return ports;
}

function portIsFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once("error", () => resolve(false));
    server.listen(port, "127.0.0.1", () => server.close(() => resolve(true)));
  });
}

function groupIsGone(pgid: number): boolean {
  try {
    process.kill(-pgid, 0);
    return false;
  } catch {
    return true;
  }
}

async function until(what: string, check: () => boolean | Promise<boolean>, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check()) return;
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  throw new Error(`timed out waiting for ${what}`);
}

describe("npm start ends with its launcher", () => {
  const started: ChildProcess[] = [];
  afterAll(() => {
    // Whatever a failed assertion left running: its whole process group, by its id.
    for (const child of started) if (child.pid && !groupIsGone(child.pid)) process.kill(-child.pid, "SIGKILL");
  });

  it("frees every port and leaves no file after SIGKILL or SIGTERM of npm; the next start reports a stale stack file", { timeout: 180_000 }, async () => {
    const ports = await freePorts(5);
    const tmp = join(scratch, "tmp");
    mkdirSync(tmp, { recursive: true });
    const stackFile = join(scratch, "npm-start-stack.json");
    const env = {
      ...process.env,
      PORT: String(ports[0]),
      MIXPANEL_SANDBOX_PORT: String(ports[1]),
      WEBHOOK_RECEIVER_PORT: String(ports[2]),
      BREVO_SANDBOX_PORT: String(ports[3]),
      BRAZE_SANDBOX_PORT: String(ports[4]),
      RELAY_LOCAL_STACK_FILE: stackFile,
      TMPDIR: tmp,
    };
    const start = async () => {
      // A process group of its own, as a terminal gives `npm start`.
      const npm = spawn("npm", ["start"], { env, detached: true, stdio: ["ignore", "pipe", "pipe"] });
      started.push(npm);
      let output = "";
      npm.stdout?.on("data", (chunk: Buffer) => (output += chunk.toString("utf8")));
      npm.stderr?.on("data", (chunk: Buffer) => (output += chunk.toString("utf8")));
      await until("the stack file of a new stack", () => readLocalStackFile(stackFile)?.pid !== undefined && output.includes("local stack is up"), 90_000);
      return { npm, output: () => output, pid: readLocalStackFile(stackFile)?.pid ?? 0 };
    };
    const endedCleanly = async (npm: ChildProcess) => {
      await until("the process group to end", () => groupIsGone(npm.pid ?? 0), 20_000);
      for (const port of ports) expect(await portIsFree(port)).toBe(true);
      expect(existsSync(stackFile)).toBe(false);
      expect(readdirSync(tmp).filter((name) => name.startsWith("relay-local-config-"))).toEqual([]);
    };

    // A crash left a stack file and a config copy behind.
    const crashed = deadPid();
    writeLocalStackFile(stackFile, { stage: "local", region: "us-east-1", awsEndpoint: "http://127.0.0.1:1", intakeUrl: "http://127.0.0.1:2", pid: crashed });
    mkdirSync(join(tmp, `relay-local-config-${crashed}-orphan`));

    const first = await start();
    expect(first.output()).toContain(`announced pid ${crashed}, which is no longer running: replacing it`);
    expect(first.output()).toContain(`relay-local-config-${crashed}-orphan (left by a stack that is no longer running)`);
    expect(first.pid).not.toBe(crashed);
    // The moved ports made a config copy; the stack answers on the chosen port.
    expect(readdirSync(tmp).filter((name) => name.startsWith(`relay-local-config-${first.pid}-`))).toHaveLength(1);
    expect((await fetch(`http://127.0.0.1:${ports[0]}/healthz`)).status).toBe(200);
    process.kill(first.npm.pid ?? 0, "SIGKILL");
    await endedCleanly(first.npm);

    const second = await start();
    expect(second.output()).not.toContain("EADDRINUSE");
    process.kill(second.npm.pid ?? 0, "SIGTERM");
    await endedCleanly(second.npm);
  });
});
