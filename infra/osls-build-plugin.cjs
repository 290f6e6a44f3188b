"use strict";
/**
 * osls plugin (serverless.yml `plugins`): every `osls package` and `osls deploy`
 * bundles the current code first, so a plain `npx osls deploy` can neither ship
 * zips without a handler (no dist/ yet) nor a stale dist/ from an older build.
 *
 * It runs `npm run build` (infra/build.ts: validates config/*.json, bundles each
 * function into dist/<name>/index.mjs) before osls zips the artifacts, then
 * refuses to continue if any function's handler file is missing.
 *
 * RELAY_SKIP_BUILD=1 skips the build (for callers that just built, e.g.
 * `npm run package -- --skip-build`); the handler check still runs.
 */
const { spawnSync } = require("node:child_process");
const { existsSync } = require("node:fs");
const path = require("node:path");

/** `dist/intake/index.handler` → `dist/intake/index.mjs` (what Lambda will import). */
function handlerFile(handler) {
  const dot = handler.lastIndexOf(".");
  return `${dot > 0 ? handler.slice(0, dot) : handler}.mjs`;
}

class RelayBuildPlugin {
  constructor(serverless, _options, utils) {
    this.serverless = serverless;
    this.log = (utils && utils.log) || { notice: console.log, warning: console.warn };
    const buildThenCheck = () => this.buildThenCheck();
    this.hooks = {
      // `osls package` and `osls deploy` (which packages first).
      "before:package:createDeploymentArtifacts": buildThenCheck,
      // `osls deploy function -f <name>` packages one function through this lifecycle.
      "before:package:function:package": buildThenCheck,
    };
  }

  serviceDir() {
    return this.serverless.serviceDir || this.serverless.config.servicePath;
  }

  buildThenCheck() {
    const serviceDir = this.serviceDir();
    if (process.env.RELAY_SKIP_BUILD === "1") {
      this.log.notice("RELAY_SKIP_BUILD=1: packaging the bundles already in dist/");
    } else {
      this.log.notice("Building the functions (npm run build) before packaging");
      const npm = process.platform === "win32" ? "npm.cmd" : "npm";
      const result = spawnSync(npm, ["run", "build"], { cwd: serviceDir, stdio: "inherit", env: process.env });
      if (result.error || result.status !== 0) {
        const why = result.error ? result.error.message : `exit code ${result.status === null ? result.signal : result.status}`;
        throw new this.serverless.classes.Error(`npm run build failed (${why}); nothing was packaged. Fix the build, then package again.`);
      }
    }
    const functions = this.serverless.service.functions || {};
    const missing = Object.entries(functions)
      .map(([name, fn]) => ({ name, file: handlerFile(String(fn.handler || "")) }))
      .filter(({ file }) => !existsSync(path.join(serviceDir, file)));
    if (missing.length > 0) {
      throw new this.serverless.classes.Error(
        `no bundle for ${missing.map(({ name, file }) => `${name} (${file})`).join(", ")}: run \`npm run build\` (or package without RELAY_SKIP_BUILD) so the zips hold a handler.`,
      );
    }
  }
}

module.exports = RelayBuildPlugin;
