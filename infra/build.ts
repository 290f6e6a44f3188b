import { readdirSync, existsSync, statSync, writeFileSync, rmSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import { readFileSync } from "node:fs";
import { decode, encode, type SourceMapSegment } from "@jridgewell/sourcemap-codec";
import { build, type Metafile, type Plugin } from "esbuild";
import { createRequire } from "node:module";
import { loadStageConfig } from "../lib/config/stage.js";

/**
 * `npm run build`: validates every stage config file, then bundles each
 * functions/<name>/handler.ts into dist/<name>/index.mjs (ESM, minified, with a
 * source map) for serverless.yml to package individually. Prints each bundle's
 * size and its heaviest inputs so a new dependency's cost is visible.
 */
const functionsDir = "functions";
// BUILD_OUT_DIR lets a test build into a folder of its own.
const outDir = process.env.BUILD_OUT_DIR ?? "dist";

for (const file of readdirSync("config").filter((name) => name.endsWith(".json"))) {
  loadStageConfig(join("config", file), file.replace(/\.json$/, ""));
  console.log(`config/${file}: valid`);
}

const names = readdirSync(functionsDir).filter((name) => existsSync(join(functionsDir, name, "handler.ts")));
rmSync(outDir, { recursive: true, force: true });

function heaviestPackages(metafile: Metafile, top: number): string {
  const byPackage = new Map<string, number>();
  for (const output of Object.values(metafile.outputs)) {
    for (const [input, { bytesInOutput }] of Object.entries(output.inputs)) {
      const match = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(input);
      const key = match?.[1] ?? "(project)";
      byPackage.set(key, (byPackage.get(key) ?? 0) + bytesInOutput);
    }
  }
  return [...byPackage.entries()]
    .sort((a, b) => b[1] - a[1])
    .slice(0, top)
    .map(([name, bytes]) => `${name} ${(bytes / 1024).toFixed(0)} KiB`)
    .join(", ");
}

/**
 * With --enable-source-maps Node reads, parses and indexes the map of every module file it loads,
 * at load time, in proportion to the map's segments. Most of a bundle is the dependencies' code
 * (the AWS SDK's, mostly), whose positions say nothing a stack trace needs: each map keeps the
 * segments of our sources only (a run of dependency code becomes one unmapped segment, so a frame
 * in it is shown at the chunk's position), and a chunk of dependency code alone ships without a map.
 */
function mapOurSourcesOnly(metafile: Metafile): void {
  for (const file of Object.keys(metafile.outputs)) {
    if (!file.endsWith(".mjs") || !existsSync(`${file}.map`)) continue;
    const map = JSON.parse(readFileSync(`${file}.map`, "utf8")) as { sources: string[]; mappings: string; [key: string]: unknown };
    const renumbered: (number | undefined)[] = [];
    const sources: string[] = [];
    map.sources.forEach((source, index) => {
      if (source.includes("node_modules/")) return;
      renumbered[index] = sources.length;
      sources.push(source);
    });
    if (sources.length === 0) {
      writeFileSync(file, readFileSync(file, "utf8").replace(/\n\/\/# sourceMappingURL=[^\n]*\n?$/, "\n"));
      rmSync(`${file}.map`, { force: true });
      continue;
    }
    const lines = decode(map.mappings).map((line) => {
      const kept: SourceMapSegment[] = [];
      for (const segment of line) {
        const source = segment.length === 1 ? undefined : renumbered[segment[1]];
        if (segment.length !== 1 && source !== undefined) {
          kept.push(segment.length === 5 ? [segment[0], source, segment[2], segment[3], segment[4]] : [segment[0], source, segment[2], segment[3]]);
        } else if (kept.at(-1)?.length !== 1) {
          kept.push([segment[0]]);
        }
      }
      return kept;
    });
    writeFileSync(`${file}.map`, JSON.stringify({ ...map, sources, mappings: encode(lines) }));
  }
}

/**
 * Node 24's `node:http` exports WebSocket, CloseEvent and MessageEvent as lazy getters backed by
 * undici; an ESM `import` of `node:http` builds the module's facade, which reads every export and
 * so loads and compiles all of undici (~15 ms of a cold start) for a function that never opens a
 * WebSocket. The SDK's HTTP handler imports `http`/`https` that way, so the bundle takes them
 * through `require` instead, exporting the plain (non-getter) members only.
 */
const requireHttpBuiltins: Plugin = {
  name: "require-http-builtins",
  setup(build) {
    build.onResolve({ filter: /^(node:)?https?$/ }, (args) =>
      args.kind === "require-call" ? { path: args.path, external: true } : { path: args.path.replace(/^node:/, ""), namespace: "require-builtin" },
    );
    build.onLoad({ filter: /.*/, namespace: "require-builtin" }, (args) => {
      const module = createRequire(import.meta.url)(args.path) as Record<string, unknown>;
      const plain = Object.keys(module).filter((key) => !Object.getOwnPropertyDescriptor(module, key)?.get && /^[A-Za-z_$][\w$]*$/.test(key));
      return { contents: `const m = require("node:${args.path}");\nexport default m;\nexport const { ${plain.join(", ")} } = m;\n`, loader: "js" };
    });
  },
};

/**
 * `bowser` parses a browser's user agent for the SDK's browser build; the SDK's Node code reaches
 * it only through a dynamic import that never runs outside a browser, and reads it with a
 * fallback when `parse` is absent. An empty module stands in for its 33 KiB.
 */
const browserOnlyModules: Plugin = {
  name: "browser-only-modules",
  setup(build) {
    build.onResolve({ filter: /^bowser$/ }, (args) => ({ path: args.path, namespace: "browser-only" }));
    build.onLoad({ filter: /.*/, namespace: "browser-only" }, () => ({ contents: "export default {};\n", loader: "js" }));
  },
};

/**
 * The AWS SDK clients describe every operation's shapes in one `schemas/schemas_0.js` whose object
 * keys are computed from string constants (`{ [_xN]: "Key" }`). esbuild cannot prove such a key
 * free of side effects, so it keeps every shape of the service, used or not (58 KiB of S3's
 * for a function that only gets and puts objects). Writing each constant's string in place of its
 * name changes nothing at run time (the names are `const` strings) and lets esbuild drop the
 * shapes of operations a function never calls.
 */
const inlineSdkSchemaNames: Plugin = {
  name: "inline-sdk-schema-names",
  setup(build) {
    build.onLoad({ filter: /[\\/]@aws-sdk[\\/]client-[^\\/]+[\\/]dist-es[\\/]schemas[\\/]schemas_\d+\.js$/ }, (args) => {
      const text = readFileSync(args.path, "utf8");
      const strings = new Map<string, string>();
      for (const match of text.matchAll(/^const (_\w+) = ("(?:[^"\\\n]|\\.)*");$/gm)) strings.set(match[1] ?? "", match[2] ?? "");
      return { contents: text.replace(/\[(_\w+)\]/g, (whole, name: string) => (strings.has(name) ? `[${strings.get(name)}]` : whole)), loader: "js" };
    });
  },
};

for (const name of names) {
  const outfile = join(outDir, name, "index.mjs");
  mkdirSync(join(outDir, name), { recursive: true });
  const result = await build({
    entryPoints: { index: join(functionsDir, name, "handler.ts") },
    outdir: join(outDir, name),
    outExtension: { ".js": ".mjs" },
    // A module the function imports at run time (`await import()`: the S3 client and commands,
    // Secrets Manager, the SDK's rarely used credential providers) becomes a chunk file beside
    // index.mjs, read only when the code first needs it; a cold start that never needs it does
    // not read, compile or map it. serverless.yml packages dist/<name>/** with every chunk.
    splitting: true,
    chunkNames: "chunk-[hash]",
    bundle: true,
    platform: "node",
    // Valid on the machine's Node 20 and on Lambda's nodejs24.x.
    target: "node20",
    format: "esm",
    // The AWS SDK's packages ship ES modules ("module") beside CommonJS ("main", esbuild's first
    // pick for platform node): only the ES build lets esbuild drop the commands and shapes a
    // function does not import (the CommonJS client-s3 alone is ~140 KiB, every operation).
    mainFields: ["module", "main"],
    minify: true,
    sourcemap: true,
    // Lambda runs with --enable-source-maps (serverless.yml), so Node reads and parses this map
    // at every cold start: mappings and file names are all a stack trace needs, the sources'
    // text (three quarters of the map) is left out.
    sourcesContent: false,
    metafile: true,
    legalComments: "none",
    // CommonJS dependencies bundled into ESM still call require() for Node built-ins.
    banner: { js: "import { createRequire as __relayCreateRequire } from 'node:module'; const require = __relayCreateRequire(import.meta.url);" },
    logLevel: "warning",
    plugins: [requireHttpBuiltins, browserOnlyModules, inlineSdkSchemaNames],
    // Lambda's credentials come from the environment or the SnapStart container endpoint only;
    // the SDK's default chain (SSO, profiles, STS) is left out of the bundles (lib/aws/lambda-credentials.ts).
    alias: { "@aws-sdk/credential-provider-node": "./lib/aws/lambda-credentials.ts" },
  });
  writeFileSync(join(outDir, name, "meta.json"), JSON.stringify(result.metafile));
  mapOurSourcesOnly(result.metafile);
  const bytes = statSync(outfile).size;
  const gzipped = gzipSync(readFileSync(outfile)).length;
  const chunks = readdirSync(join(outDir, name)).filter((file) => file.startsWith("chunk-") && file.endsWith(".mjs"));
  const totalBytes = bytes + chunks.reduce((sum, file) => sum + statSync(join(outDir, name, file)).size, 0);
  console.log(
    `${name.padEnd(17)} ${(bytes / 1024).toFixed(0).padStart(5)} KiB (${(gzipped / 1024).toFixed(0)} KiB gzipped; ${(totalBytes / 1024).toFixed(0)} KiB with ${chunks.length} chunks)  heaviest: ${heaviestPackages(result.metafile, 5)}`,
  );
}
