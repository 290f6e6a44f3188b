import { readFileSync, readdirSync, statSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { describe, expect, it } from "vitest";

/**
 * The import graph of the product (lib/, functions/, infra/) against the layering in
 * docs/architecture.md ("Folders and layers"): every file sits in one layer (its folder), and a file imports only from its own layer or lower
 * ones; the product never imports test/; and no two files import each other (directly or round
 * a loop). The imports are read from the source text (static `import`/`export … from` and
 * dynamic `import("…")`), so a new arrow fails here before review.
 */
const ROOT = resolve(import.meta.dirname, "../..");

/**
 * Bottom to top: each layer is a set of folders (paths ending in `/`). Keep in step with
 * docs/architecture.md.
 */
const LAYERS: readonly { readonly name: string; readonly paths: readonly string[] }[] = [
  // Leaves: no I/O, no configuration; generic helpers, queue envelopes, telemetry, vendors' vocabularies.
  { name: "foundation", paths: ["lib/util/", "lib/records/", "lib/observability/", "lib/vocabulary/"] },
  // The stage config, and each area's config schema, which the stage config composes.
  { name: "config", paths: ["lib/config/"] },
  // AWS clients, HTTP with the relay's rules, secrets.
  { name: "platform", paths: ["lib/aws/", "lib/http/", "lib/secrets/"] },
  // One vendor or store each: the queue and rejected store, Mixpanel, Brevo, the erased-ids list.
  { name: "clients", paths: ["lib/queue/", "lib/mixpanel/", "lib/brevo/", "lib/privacy/"] },
  // Pure mappers (sources → records) and the personal-data rules.
  { name: "mapping", paths: ["lib/sources/", "lib/pii/"] },
  // One step of a function: enqueue (with the Brevo fan-out), the forwarders, cohorts, delivery, GDPR deletion.
  { name: "steps", paths: ["lib/enqueue/", "lib/forwarder/", "lib/cohorts/", "lib/destinations/", "lib/gdpr/", "lib/lookup/", "lib/queries/"] },
  // Where a request or an object comes in: the HTTP intake, the Currents Avro reader, history files, the Brevo backfill.
  { name: "edges", paths: ["lib/intake/", "lib/currents/", "lib/import/", "lib/backfill/"] },
  // Each function's wiring: clients, config and secrets put together once per container.
  { name: "wiring", paths: ["lib/runtime/"] },
  { name: "handlers", paths: ["functions/"] },
  { name: "operator", paths: ["infra/"] },
];

/** A file's layer: the folder (or the one file) it sits in. */
function layerOf(file: string): number {
  const index = LAYERS.findIndex((layer) => layer.paths.some((path) => (path.endsWith("/") ? file.startsWith(path) : file === path)));
  if (index < 0) throw new Error(`${file} is in no layer: put it in a folder of LAYERS (test/unit/import-graph.test.ts) and docs/architecture.md`);
  return index;
}

/** Every arrow from a file to a product file in a higher layer. */
function upwardImports(graph: ReadonlyMap<string, readonly string[]>): string[] {
  const upward: string[] = [];
  for (const [file, targets] of graph) {
    for (const target of targets) {
      if (!/^(lib|functions|infra)\//.test(target)) continue;
      if (layerOf(target) > layerOf(file)) upward.push(`${file} (${LAYERS[layerOf(file)]?.name}) → ${target} (${LAYERS[layerOf(target)]?.name})`);
    }
  }
  return upward;
}

function sourceFiles(folder: string): string[] {
  const files: string[] = [];
  for (const name of readdirSync(join(ROOT, folder))) {
    const path = join(folder, name);
    if (statSync(join(ROOT, path)).isDirectory()) files.push(...sourceFiles(path));
    else if (/\.(ts|cjs|mjs)$/.test(name) && !name.endsWith(".d.ts")) files.push(path);
  }
  return files;
}

const IMPORT = /(?:^|[\s;])(?:import|export)\s[^;]*?\bfrom\s*["']([^"']+)["']|import\s*\(\s*["']([^"']+)["']\s*\)|require\(\s*["']([^"']+)["']\s*\)/g;

/** Relative imports of one file, as paths from the root (`.js` → `.ts`). */
function importsOf(file: string): string[] {
  const text = readFileSync(join(ROOT, file), "utf8");
  const targets: string[] = [];
  for (const match of text.matchAll(IMPORT)) {
    const specifier = match[1] ?? match[2] ?? match[3];
    if (specifier === undefined || !specifier.startsWith(".")) continue;
    targets.push(relative(ROOT, resolve(ROOT, dirname(file), specifier)).replace(/\.js$/, ".ts"));
  }
  return targets;
}

const PRODUCT = ["lib", "functions", "infra"].flatMap(sourceFiles);
const GRAPH = new Map(PRODUCT.map((file) => [file, importsOf(file)]));

describe("import graph", () => {
  it("reads imports the way the checks below rely on", () => {
    // Guards the parser: files known to import across layers are seen doing so.
    expect(GRAPH.get("lib/intake/process.ts")).toContain("lib/enqueue/enqueue.ts");
    expect(GRAPH.get("lib/config/stage.ts")).toContain("lib/config/cohort-syncs.ts");
    expect(GRAPH.get("functions/intake/handler.ts")?.some((target) => target.startsWith("lib/"))).toBe(true);
    expect(layerOf("lib/currents/reader.ts")).toBeGreaterThan(layerOf("lib/enqueue/enqueue.ts"));
    expect(layerOf("lib/runtime/cohorts.ts")).toBeGreaterThan(layerOf("lib/destinations/deliver.ts"));
  });

  it("keeps lib/config free of arrows into area folders (each area's schema lives in lib/config)", () => {
    const allowed = ["lib/config/", "lib/util/", "lib/vocabulary/"];
    const outward = [...GRAPH]
      .filter(([file]) => file.startsWith("lib/config/"))
      .flatMap(([file, targets]) => targets.filter((target) => !allowed.some((prefix) => target.startsWith(prefix))).map((target) => `${file} → ${target}`));
    expect(outward).toEqual([]);
  });

  it("has every product file in a layer and no arrow running back up", () => {
    expect(upwardImports(GRAPH)).toEqual([]);
  });

  it("names an upward arrow when there is one, and layers are folders only", () => {
    const planted = new Map([...GRAPH, ["lib/util/planted.ts", ["lib/intake/process.ts"]]]);
    expect(upwardImports(planted)).toEqual(["lib/util/planted.ts (foundation) → lib/intake/process.ts (edges)"]);
    const files = LAYERS.flatMap((layer) => layer.paths.filter((path) => !path.endsWith("/")));
    expect(files).toEqual([]);
  });

  it("never imports test/ from the product", () => {
    const intoTests = [...GRAPH].flatMap(([file, targets]) => targets.filter((target) => target.startsWith("test/")).map((target) => `${file} → ${target}`));
    expect(intoTests).toEqual([]);
  });


  it("keeps the local fakes apart from the product: infra/local/peers imports nothing from lib/ or functions/, directly or through another file", () => {
    const PEERS = "infra/local/peers/";
    const peers = [...GRAPH.keys()].filter((file) => file.startsWith(PEERS));
    expect(peers).toContain("infra/local/peers/mixpanel-server.ts");
    expect(peers).toContain("infra/local/peers/braze-server.ts");
    const reached = (start: string): string[] => {
      const seen = new Set<string>();
      const queue = [start];
      while (queue.length > 0) {
        const file = queue.pop() ?? "";
        for (const target of GRAPH.get(file) ?? []) {
          if (seen.has(target)) continue;
          seen.add(target);
          queue.push(target);
        }
      }
      return [...seen];
    };
    const intoProduct = peers.flatMap((file) =>
      reached(file)
        .filter((target) => target.startsWith("lib/") || target.startsWith("functions/"))
        .map((target) => `${file} → ${target}`),
    );
    expect(intoProduct).toEqual([]);
    // Only other peers, so no file outside the folder can carry the product in later.
    const outward = peers.flatMap((file) => (GRAPH.get(file) ?? []).filter((target) => !target.startsWith(PEERS)).map((target) => `${file} → ${target}`));
    expect(outward).toEqual([]);
  });

  it("has no import cycle between product files", () => {
    const cycles: string[] = [];
    const state = new Map<string, "open" | "done">();
    const visit = (file: string, path: string[]): void => {
      if (state.get(file) === "done") return;
      if (state.get(file) === "open") {
        cycles.push([...path.slice(path.indexOf(file)), file].join(" → "));
        return;
      }
      state.set(file, "open");
      for (const target of GRAPH.get(file) ?? []) if (GRAPH.has(target)) visit(target, [...path, file]);
      state.set(file, "done");
    };
    for (const file of GRAPH.keys()) visit(file, []);
    expect(cycles).toEqual([]);
  });
});
