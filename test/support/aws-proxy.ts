import { type IncomingHttpHeaders, type OutgoingHttpHeaders, createServer, request as httpRequest, type Server } from "node:http";
import type { AddressInfo } from "node:net";

/**
 * A loopback HTTP proxy in front of a local AWS protocol server (fauxqs), for tests that need
 * the network or the far side to misbehave the way AWS or a network can: each request may be
 * answered by the test instead of forwarded, and each forwarded answer may be changed.
 */
export interface ProxiedRequest {
  readonly method: string;
  readonly url: string;
  readonly headers: IncomingHttpHeaders;
  readonly body: Buffer;
}

export interface ProxiedAnswer {
  status: number;
  headers: OutgoingHttpHeaders;
  body: Buffer;
}

export interface AwsProxyHooks {
  /** An answer to send instead of forwarding, or undefined to forward. */
  answer?(request: ProxiedRequest): ProxiedAnswer | undefined;
  /** Changes the upstream answer in place before it is sent on. */
  change?(request: ProxiedRequest, answer: ProxiedAnswer): void;
}

export async function startAwsProxy(upstream: string, hooks: AwsProxyHooks): Promise<{ url: string; requests: ProxiedRequest[]; stop(): Promise<void> }> {
  const target = new URL(upstream);
  const requests: ProxiedRequest[] = [];
  const server: Server = createServer((incoming, outgoing) => {
    const chunks: Buffer[] = [];
    incoming.on("data", (chunk: Buffer) => chunks.push(chunk));
    incoming.on("end", () => {
      const request: ProxiedRequest = { method: incoming.method ?? "GET", url: incoming.url ?? "/", headers: incoming.headers, body: Buffer.concat(chunks) };
      requests.push(request);
      const send = (answer: ProxiedAnswer) => {
        outgoing.writeHead(answer.status, { ...answer.headers, "content-length": String(answer.body.length) });
        outgoing.end(answer.body);
      };
      const direct = hooks.answer?.(request);
      if (direct) return send(direct);
      const forwarded = httpRequest(
        { host: target.hostname, port: target.port, method: request.method, path: request.url, headers: { ...request.headers, host: target.host } },
        (response) => {
          const body: Buffer[] = [];
          response.on("data", (chunk: Buffer) => body.push(chunk));
          response.on("end", () => {
            const headers: OutgoingHttpHeaders = { ...response.headers };
            delete headers["content-length"];
            delete headers["transfer-encoding"];
            const answer: ProxiedAnswer = { status: response.statusCode ?? 502, headers, body: Buffer.concat(body) };
            hooks.change?.(request, answer);
            send(answer);
          });
        },
      );
      forwarded.on("error", () => send({ status: 502, headers: {}, body: Buffer.from("upstream failed") }));
      forwarded.end(request.body);
    });
  });
  await new Promise<void>((done) => server.listen(0, "127.0.0.1", done));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    stop: () => new Promise<void>((done) => server.close(() => done())),
  };
}
