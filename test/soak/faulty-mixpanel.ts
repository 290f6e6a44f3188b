import { type IncomingMessage, type Server, type ServerResponse, createServer } from "node:http";
import { gunzipSync, gzipSync } from "node:zlib";
import { closeServer, listenOnLoopback } from "../../infra/local/peers/local-server.js";

/**
 * A bad day at Mixpanel, in front of the strict local Mixpanel (test/support/mixpanel-server.ts):
 * each /import request draws a fault or is passed through. Faults: 429 with and without
 * Retry-After, 500/502/503, 413 (for requests of more than one event), a reset connection,
 * a stall past the client's timeout, and a lost ack (the events are ingested, then the
 * connection is dropped before the answer). Events carrying `"soak_poison":true` are refused
 * the way Mixpanel's strict mode does: 400 with `failed_records` naming them, the rest ingested.
 */
export type FaultKind =
  | "pass"
  | "429-retry-after"
  | "429"
  | "500"
  | "502"
  | "503"
  | "413"
  | "reset"
  | "stall"
  | "lost-ack";

export interface FaultyMixpanelOptions {
  /** The strict local Mixpanel the healthy requests go to. */
  readonly upstream: string;
  /** How long a stalled request is held: longer than the relay's HTTP timeout. */
  readonly stallMs: number;
  /** Chance that a request draws a fault at all. */
  readonly faultRate: number;
  readonly random: () => number;
}

const FAULTS: readonly { kind: Exclude<FaultKind, "pass">; weight: number }[] = [
  { kind: "429-retry-after", weight: 3 },
  { kind: "429", weight: 2 },
  { kind: "500", weight: 1 },
  { kind: "502", weight: 1 },
  { kind: "503", weight: 1 },
  { kind: "413", weight: 1 },
  { kind: "reset", weight: 2 },
  { kind: "stall", weight: 1 },
  { kind: "lost-ack", weight: 2 },
];
const TOTAL_WEIGHT = FAULTS.reduce((sum, fault) => sum + fault.weight, 0);

export const POISON_MARKER = '"soak_poison":true';

export class FaultyMixpanel {
  readonly counts = new Map<FaultKind | "poison", number>();
  private server: Server | undefined;
  private readonly stalled = new Set<NodeJS.Timeout>();
  url = "";

  constructor(private readonly options: FaultyMixpanelOptions) {}

  async start(): Promise<string> {
    this.server = createServer((request, response) => {
      this.route(request, response).catch(() => {
        if (!response.headersSent) response.writeHead(502, { "content-type": "application/json" });
        response.end(JSON.stringify({ error: "fault front failed to reach the local Mixpanel" }));
      });
    });
    const port = await listenOnLoopback(this.server);
    this.url = `http://127.0.0.1:${port}`;
    return this.url;
  }

  async stop(): Promise<void> {
    for (const timer of this.stalled) clearTimeout(timer);
    await closeServer(this.server);
  }

  private count(kind: FaultKind | "poison"): void {
    this.counts.set(kind, (this.counts.get(kind) ?? 0) + 1);
  }

  private draw(records: number): FaultKind {
    if (this.options.random() >= this.options.faultRate) return "pass";
    let pick = this.options.random() * TOTAL_WEIGHT;
    for (const fault of FAULTS) {
      pick -= fault.weight;
      if (pick < 0) return fault.kind === "413" && records <= 1 ? "pass" : fault.kind;
    }
    return "pass";
  }

  private async route(request: IncomingMessage, response: ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const chunk of request) chunks.push(Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk));
    const raw = Buffer.concat(chunks);
    const url = new URL(request.url ?? "/", "http://mixpanel");
    if (request.method !== "POST" || url.pathname !== "/import") return this.forward(request, response, raw);

    const gzipped = request.headers["content-encoding"] === "gzip";
    const lines = (gzipped ? gunzipSync(raw) : raw).toString("utf8").split("\n").filter((line) => line.trim() !== "");
    const fault = this.draw(lines.length);
    this.count(fault);
    switch (fault) {
      case "429-retry-after":
        return answer(response, 429, { error: "rate limited", status: 0 }, { "retry-after": "1" });
      case "429":
        return answer(response, 429, { error: "rate limited", status: 0 });
      case "500":
      case "502":
      case "503":
        return answer(response, Number(fault), { error: `server error ${fault}`, status: 0 });
      case "413":
        return answer(response, 413, { error: "request too large", status: 0 });
      case "reset":
        request.socket.destroy();
        return;
      case "stall": {
        const timer = setTimeout(() => {
          this.stalled.delete(timer);
          request.socket.destroy();
        }, this.options.stallMs);
        this.stalled.add(timer);
        return;
      }
      case "lost-ack":
        await this.importWithPoison(request, url, lines, gzipped);
        request.socket.destroy();
        return;
      case "pass": {
        const result = await this.importWithPoison(request, url, lines, gzipped);
        return answer(response, result.status, result.body);
      }
    }
  }

  /**
   * Sends the healthy events upstream and answers as Mixpanel's strict mode does for the
   * poison ones: 400, `failed_records` with their index in *this* request, the rest ingested.
   */
  private async importWithPoison(
    request: IncomingMessage,
    url: URL,
    lines: readonly string[],
    gzipped: boolean,
  ): Promise<{ status: number; body: unknown }> {
    const healthy: { line: string; index: number }[] = [];
    const failed: { index: number; insert_id: string; field: string; message: string }[] = [];
    lines.forEach((line, index) => {
      if (!line.includes(POISON_MARKER)) {
        healthy.push({ line, index });
        return;
      }
      this.count("poison");
      const insertId = /"\$insert_id":"([^"]*)"/.exec(line)?.[1] ?? "";
      failed.push({ index, insert_id: insertId, field: "properties.soak_poison", message: "'properties.soak_poison' is not allowed in this project" });
    });
    let imported = 0;
    if (healthy.length > 0) {
      const text = `${healthy.map(({ line }) => line).join("\n")}\n`;
      const upstream = await fetch(`${this.options.upstream}${url.pathname}${url.search}`, {
        method: "POST",
        headers: {
          authorization: request.headers.authorization ?? "",
          "content-type": request.headers["content-type"] ?? "application/x-ndjson",
          ...(gzipped ? { "content-encoding": "gzip" } : {}),
        },
        body: new Uint8Array(gzipped ? gzipSync(text) : Buffer.from(text)),
      });
      const body: unknown = await upstream.json();
      if (upstream.status !== 200 && upstream.status !== 400) return { status: upstream.status, body };
      imported = numberField(body, "num_records_imported");
      for (const failure of arrayField(body, "failed_records")) {
        const position = numberField(failure, "index");
        const original = healthy[position];
        if (original) failed.push({ index: original.index, insert_id: String(field(failure, "insert_id") ?? ""), field: String(field(failure, "field") ?? ""), message: String(field(failure, "message") ?? "") });
      }
    }
    if (failed.length === 0) return { status: 200, body: { code: 200, num_records_imported: imported, status: "OK" } };
    return {
      status: 400,
      body: {
        code: 400,
        error: "some data points in the request failed validation",
        num_records_imported: imported,
        status: "Bad Request",
        failed_records: failed.sort((a, b) => a.index - b.index),
      },
    };
  }

  private async forward(request: IncomingMessage, response: ServerResponse, raw: Buffer): Promise<void> {
    const url = new URL(request.url ?? "/", "http://mixpanel");
    const headers: Record<string, string> = {};
    for (const [name, value] of Object.entries(request.headers)) {
      if (typeof value === "string" && !["host", "content-length", "connection"].includes(name)) headers[name] = value;
    }
    const upstream = await fetch(`${this.options.upstream}${url.pathname}${url.search}`, {
      method: request.method ?? "GET",
      headers,
      ...(request.method === "GET" || request.method === "HEAD" ? {} : { body: new Uint8Array(raw) }),
    });
    response.writeHead(upstream.status, { "content-type": upstream.headers.get("content-type") ?? "application/json" });
    response.end(Buffer.from(await upstream.arrayBuffer()));
  }
}

function answer(response: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  response.writeHead(status, { "content-type": "application/json", ...headers });
  response.end(JSON.stringify(body));
}

function field(value: unknown, key: string): unknown {
  return value !== null && typeof value === "object" && Object.hasOwn(value, key) ? Object.getOwnPropertyDescriptor(value, key)?.value : undefined;
}

function numberField(value: unknown, key: string): number {
  const found = field(value, key);
  return typeof found === "number" ? found : 0;
}

function arrayField(value: unknown, key: string): unknown[] {
  const found = field(value, key);
  return Array.isArray(found) ? found : [];
}
