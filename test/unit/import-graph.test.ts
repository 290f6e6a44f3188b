import { readFileSync, readdirSync, statSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { describe, expect, it } from "vitest";

/**
 * The import graph of the product (lib/, functions/, infra/) against the layering in README
 * "Layout": every file sits in one layer, and a file imports only from its own layer or lower
 * ones; the product never imports test/; and no two files import each other (directly or round
 * a loop). The imports are read from the source text (static `import`/`export … from` and
 * dynamic `import("…")`), so a new arrow fails here before review.
 */
const ROOT = resolve(import.meta.dirname, "../..");

/**
 * Bottom to top. A path is relative to the root, without `.ts`; one ending in `/` is a folder.
 * Keep in step with README "Layout".
 */
const LAYERS: readonly { readonly name: string; readonly paths: readonly string[] }[] = [
  {
    // Leaves: no I/O, no configuration; vendor vocabularies (Mixpanel's event rules, Braze's labels).
    name: "foundation",
    paths: [
      "lib/errors",
      "lib/util/",
      "lib/records/",
      "lib/observability/",
      "lib/runtime/once",
      "lib/mixpanel/event-rules",
      "lib/vocabulary/",
      "lib/sources/renames",
      "lib/sources/json-object",
    ],
  },
  {
    // The stage config, and each area's config schema, which the stage config composes: leaves over foundation.
    name: "config",
    paths: ["lib/config/"],
  },
  { name: "platform", paths: ["lib/aws/", "lib/http/", "lib/secrets/"] },
  { name: "clients", paths: ["lib/queue/", "lib/mixpanel/", "lib/brevo/client", "lib/privacy/gdpr"] },
  // Pure mappers and the PII rules (mapped records → protected records), the Brevo fan-out.
  { name: "mapping", paths: ["lib/sources/", "lib/pii/", "lib/brevo/identity", "lib/brevo/events", "lib/brevo/contacts", "lib/brevo/companies", "lib/brevo/fanout"] },
  // One step of a function: the enqueue step, the forwarders' batch logic, cohort export and delivery.
  {
    name: "steps",
    paths: ["lib/enqueue/", "lib/forwarder/process", "lib/brevo/forwarder", "lib/privacy/", "lib/cohorts/", "lib/destinations/"],
  },
  // Where a request or an object comes in: HTTP intake, Currents Avro reader.
  { name: "edges", paths: ["lib/intake/", "lib/sources/braze-avro-reader"] },
  // Each function's wiring: clients, config and secrets put together once per container.
  { name: "wiring", paths: ["lib/runtime/", "lib/intake/runtime", "lib/forwarder/runtime", "lib/brevo/runtime", "lib/cohorts/runtime"] },
  { name: "handlers", paths: ["functions/"] },
  { name: "operator", paths: ["infra/"] },
];

/** A file's layer: the rule naming the file itself, else the rule with the longest matching folder. */
function layerOf(file: string): number {
  const bare = file.replace(/\.(ts|cjs|mjs|js)$/, "");
  const exact = LAYERS.findIndex((layer) => layer.paths.includes(bare));
  if (exact >= 0) return exact;
  let best = -1;
  let bestLength = 0;
  for (const [index, layer] of LAYERS.entries()) {
    for (const path of layer.paths) {
      if (path.endsWith("/") && bare.startsWith(path) && path.length > bestLength) {
        best = index;
        bestLength = path.length;
      }
    }
  }
  if (best < 0) throw new Error(`${file} is in no layer: add it to LAYERS (test/unit/import-graph.test.ts) and README "Layout"`);
  return best;
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
    expect(layerOf("lib/sources/braze-avro-reader.ts")).toBeGreaterThan(layerOf("lib/enqueue/enqueue.ts"));
    expect(layerOf("lib/cohorts/runtime.ts")).toBeGreaterThan(layerOf("lib/destinations/deliver.ts"));
  });

  it("keeps lib/config free of arrows into area folders (each area's schema lives in lib/config)", () => {
    const allowed = ["lib/config/", "lib/errors.ts", "lib/util/", "lib/vocabulary/"];
    const outward = [...GRAPH]
      .filter(([file]) => file.startsWith("lib/config/"))
      .flatMap(([file, targets]) => targets.filter((target) => !allowed.some((prefix) => target.startsWith(prefix))).map((target) => `${file} → ${target}`));
    expect(outward).toEqual([]);
  });

  it("has every product file in a layer and no arrow running back up", () => {
    const upward: string[] = [];
    for (const [file, targets] of GRAPH) {
      for (const target of targets) {
        if (!target.startsWith("lib/") && !target.startsWith("functions/") && !target.startsWith("infra/")) continue;
        if (layerOf(target) > layerOf(file)) {
          upward.push(`${file} (${LAYERS[layerOf(file)]?.name}) → ${target} (${LAYERS[layerOf(target)]?.name})`);
        }
      }
    }
    expect(upward).toEqual([]);
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
