/**
 * `npm run package -- --stage prod [--package <dir>] [other osls flags]`
 *
 * Checks the stage config file, then runs `osls package` for the stage, whose
 * build plugin (infra/osls-build-plugin.cjs) runs `npm run build` and refuses
 * zips without a handler; then lists the zips. Needs no AWS credentials and
 * makes no network calls: deploying is a separate step (docs/deployment.md).
 */
import { spawnSync } from "node:child_process";
import { existsSync, readdirSync, statSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { loadStageConfig, stageConfigPath } from "../lib/config/stage.js";
import { assertStageName } from "./stack-layout.js";

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), "..");

export interface PackageArgs {
  readonly stage: string;
  /** Output directory for the template and zips (osls `--package`); default .serverless/. */
  readonly packageDir?: string;
  /** Skip `npm run build` (the bundles in dist/ are already current). */
  readonly skipBuild: boolean;
  /** Passed to osls unchanged (e.g. --param="currentsBucket=…"). */
  readonly passThrough: string[];
}

export function parsePackageArgs(argv: readonly string[]): PackageArgs {
  let stage: string | undefined;
  let packageDir: string | undefined;
  let skipBuild = false;
  const passThrough: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] ?? "";
    const [flag, inline] = arg.includes("=") ? [arg.slice(0, arg.indexOf("=")), arg.slice(arg.indexOf("=") + 1)] : [arg, undefined];
    const value = () => inline ?? argv[++i];
    if (flag === "--stage" || flag === "-s") stage = value();
    else if (flag === "--package" || flag === "-p") packageDir = value();
    else if (flag === "--skip-build") skipBuild = true;
    else passThrough.push(arg);
  }
  if (!stage) throw new Error("usage: npm run package -- --stage <stage> [--package <dir>] [--skip-build] [osls flags]");
  return { stage: assertStageName(stage), packageDir, skipBuild, passThrough };
}

/** Absolute path of the osls CLI installed as a devDependency. */
export function oslsBin(): string {
  const require = createRequire(import.meta.url);
  return join(dirname(require.resolve("osls/package.json")), "bin", "serverless.js");
}

function run(command: string, args: string[], cwd: string, env: NodeJS.ProcessEnv): void {
  const result = spawnSync(command, args, { cwd, stdio: "inherit", env });
  if (result.error) throw result.error;
  if (result.status !== 0) throw new Error(`${command} ${args.join(" ")} exited with ${result.status ?? result.signal}`);
}

function describeArtifacts(dir: string): string {
  if (!existsSync(dir)) return "";
  return readdirSync(dir)
    .filter((name) => name.endsWith(".zip"))
    .map((name) => `  ${name.padEnd(26)} ${(statSync(join(dir, name)).size / 1024).toFixed(1)} KiB`)
    .join("\n");
}

export function packageStage(args: PackageArgs): void {
  // Fail on a bad stage config here, with the key that is wrong, rather than at cold start.
  loadStageConfig(join(repoRoot, stageConfigPath(args.stage)), args.stage);

  const osls = [oslsBin(), "package", "--stage", args.stage];
  if (args.packageDir) osls.push("--package", args.packageDir);
  // The plugin builds unless told the bundles in dist/ are current; it checks them either way.
  run(process.execPath, [...osls, ...args.passThrough], repoRoot, args.skipBuild ? { ...process.env, RELAY_SKIP_BUILD: "1" } : process.env);

  const outputDir = resolve(repoRoot, args.packageDir ?? ".serverless");
  console.log(`\nPackaged stage ${args.stage} into ${outputDir}:\n${describeArtifacts(outputDir)}`);
  console.log(`Template: ${join(outputDir, "cloudformation-template-update-stack.json")}`);
}

if (process.argv[1] && import.meta.url === pathToFileURL(resolve(process.argv[1])).href) {
  try {
    packageStage(parsePackageArgs(process.argv.slice(2)));
  } catch (error) {
    console.error(`package failed: ${error instanceof Error ? error.message : String(error)}`);
    process.exit(1);
  }
}
