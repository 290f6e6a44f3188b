import { spawn } from "node:child_process";

/**
 * Runs a measuring script in a Node process of its own (so its CPU and peak RSS are its own)
 * and answers the JSON of the `RESULT {…}` line it prints; killed after `timeoutMs`.
 */
export function runResultChild(nodeArgs: readonly string[], options: { cwd?: string; env: NodeJS.ProcessEnv; timeoutMs: number }): Promise<unknown> {
  return new Promise((done, fail) => {
    const child = spawn(process.execPath, [...nodeArgs], { ...(options.cwd ? { cwd: options.cwd } : {}), env: options.env, stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    let err = "";
    child.stdout.on("data", (chunk: Buffer) => (out += chunk.toString()));
    child.stderr.on("data", (chunk: Buffer) => (err += chunk.toString()));
    const timer = setTimeout(() => child.kill("SIGKILL"), options.timeoutMs);
    child.on("close", (code) => {
      clearTimeout(timer);
      const line = out.split("\n").find((candidate) => candidate.startsWith("RESULT "));
      if (code === 0 && line) done(JSON.parse(line.slice("RESULT ".length)));
      else fail(new Error(`${nodeArgs.at(-1)} exited ${code}: ${err.slice(-2_000)}`));
    });
  });
}
