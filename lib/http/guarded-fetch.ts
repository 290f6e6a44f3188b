import { lookup as dnsLookup } from "node:dns/promises";
import type { IncomingMessage } from "node:http";
import { type LookupFunction, isIP } from "node:net";
import { ValidationError } from "../util/errors.js";
import { type AddressPolicy, normalizeHost, resolvedAddressProblem } from "../util/address-policy.js";
import type { FetchLike } from "./fetch.js";

/**
 * The fetch every destination request goes through. It resolves the host
 * itself, refuses the request when any answer is a non-public address (unless
 * the destination opted in, see address-policy.ts), and connects to exactly the
 * address it checked: the check runs inside the socket's `lookup`, so there is
 * no second resolution a rebinding DNS server could answer differently. The
 * URL's host name is kept for TLS (SNI and certificate check) and the Host
 * header. It never follows redirects (node:http does not).
 *
 * A refused address is a ValidationError (permanent: the page goes to the
 * failed ledger and the DLQ with the reason, and the sync turns unhealthy).
 */
export type Resolver = (host: string) => Promise<{ address: string; family: number }[]>;

// node:http and node:https as CommonJS exports, not through an ESM `import`: on Node 24 the ESM
// facade of node:http evaluates every export, including the lazy WebSocket getters that load
// undici, ~25 ms of every webhook-delivery cold start (docs/performance.md); this takes ~4.
const { Agent: HttpAgent, request: httpRequest } = process.getBuiltinModule("node:http");
const { Agent: HttpsAgent, request: httpsRequest } = process.getBuiltinModule("node:https");

export interface GuardedFetchOptions {
  readonly policy: AddressPolicy;
  /** DNS; defaults to the system resolver (all answers). */
  readonly resolve?: Resolver;
}

class AddressRefusedError extends Error {
  override readonly name = "AddressRefusedError";
}

const systemResolve: Resolver = (host) => dnsLookup(host, { all: true, verbatim: true });

const NULL_BODY_STATUS = new Set([101, 204, 205, 304]);

function toHeaders(raw: IncomingMessage["headers"]): Headers {
  const headers = new Headers();
  for (const [name, value] of Object.entries(raw)) {
    if (value === undefined) continue;
    for (const item of Array.isArray(value) ? value : [value]) headers.append(name, item);
  }
  return headers;
}

export function createGuardedFetch(options: GuardedFetchOptions): FetchLike {
  const { policy } = options;
  const resolve = options.resolve ?? systemResolve;
  // Kept alive across the pages a warm container sends; one pool per policy (sockets are never shared across policies).
  const httpAgent = new HttpAgent({ keepAlive: true });
  const httpsAgent = new HttpsAgent({ keepAlive: true });

  const lookup: LookupFunction = (hostname, lookupOptions, callback) => {
    resolve(hostname).then(
      (answers) => {
        if (answers.length === 0) {
          callback(new AddressRefusedError(`${hostname} has no address`), "", 0);
          return;
        }
        for (const answer of answers) {
          const problem = resolvedAddressProblem(hostname, answer.address, policy);
          if (problem) {
            callback(new AddressRefusedError(problem), "", 0);
            return;
          }
        }
        if (lookupOptions.all) {
          // The (@types/node) callback signature covers only the single-address form.
          (callback as unknown as (e: null, a: { address: string; family: number }[]) => void)(null, answers);
          return;
        }
        const first = answers[0] ?? { address: "", family: 4 };
        callback(null, first.address, first.family);
      },
      (error: unknown) => callback(error instanceof Error ? error : new Error(String(error)), "", 0),
    );
  };

  return (input, init = {}) =>
    new Promise<Response>((resolvePromise, reject) => {
      const url = new URL(input);
      const host = normalizeHost(url.hostname);
      if (isIP(host) !== 0) {
        // Node skips `lookup` for an IP literal: check it here.
        const problem = resolvedAddressProblem(host, host, policy);
        if (problem) {
          reject(new ValidationError(problem));
          return;
        }
      }
      if (url.protocol !== "https:" && url.protocol !== "http:") {
        reject(new ValidationError(`unsupported protocol ${url.protocol}`));
        return;
      }
      const body = init.body;
      if (body !== undefined && body !== null && typeof body !== "string") {
        reject(new ValidationError("guarded fetch sends string bodies only"));
        return;
      }
      const headers: Record<string, string> = {};
      new Headers(init.headers).forEach((value, name) => {
        headers[name] = value;
      });
      if (typeof body === "string") headers["content-length"] = String(Buffer.byteLength(body));
      const send = url.protocol === "https:" ? httpsRequest : httpRequest;
      const request = send(
        url,
        {
          method: init.method ?? "GET",
          headers,
          agent: url.protocol === "https:" ? httpsAgent : httpAgent,
          lookup,
        },
        (response) => {
          const chunks: Buffer[] = [];
          response.on("data", (chunk: Buffer) => chunks.push(chunk));
          response.on("error", reject);
          response.on("end", () => {
            const status = response.statusCode ?? 0;
            const text = Buffer.concat(chunks).toString("utf8");
            try {
              resolvePromise(new Response(NULL_BODY_STATUS.has(status) ? null : text, { status, headers: toHeaders(response.headers) }));
            } catch (error) {
              reject(error);
            }
          });
        },
      );
      request.on("error", (error) => {
        reject(error instanceof AddressRefusedError ? new ValidationError(error.message) : error);
      });
      const signal = init.signal;
      if (signal) {
        if (signal.aborted) request.destroy(new Error("aborted"));
        else signal.addEventListener("abort", () => request.destroy(new Error("aborted")), { once: true });
      }
      request.end(typeof body === "string" ? body : undefined);
    });
}
