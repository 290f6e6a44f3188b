import { isIP } from "node:net";

/**
 * Which hosts a destination may point at (pure). Destinations receive member
 * emails and carry API keys, so a URL must not reach the relay's own network:
 * loopback, RFC 1918, CGNAT, link-local (the cloud metadata service at
 * 169.254.169.254), unique-local IPv6, and every IPv4 address hidden inside an
 * IPv6 form (mapped `::ffff:a.b.c.d`, compatible `::a.b.c.d`, NAT64
 * `64:ff9b::/96`, 6to4 `2002::/16`). WHATWG URL parsing already turns the odd
 * IPv4 spellings (`2130706433`, `0x7f.1`, `017700000001`) into dotted quads, so
 * the check runs on `new URL(...).hostname`, never on the raw string.
 *
 * The same classification runs twice: on the URL at config validation, and on
 * every DNS answer at send time (lib/http/guarded-fetch.ts), so a public name
 * that resolves to a private address is refused too.
 */

export interface AddressPolicy {
  /** The destination opted in (`allow_private_network: true`): private answers are fine. */
  readonly allowPrivate: boolean;
  /** The local stage (npm start, tests): loopback receivers are fine, and so is plain http to them. */
  readonly localStage: boolean;
}

interface Range {
  readonly bytes: number[];
  readonly prefix: number;
  readonly label: string;
}

const v4 = (cidr: string, label: string): Range => {
  const [address = "", prefix = "32"] = cidr.split("/");
  return { bytes: address.split(".").map(Number), prefix: Number(prefix), label };
};

/** IPv4 ranges that are not globally reachable (IANA special-purpose registry). */
const IPV4_RANGES: readonly Range[] = [
  v4("0.0.0.0/8", "unspecified (0.0.0.0/8)"),
  v4("10.0.0.0/8", "private (10.0.0.0/8)"),
  v4("100.64.0.0/10", "carrier-grade NAT (100.64.0.0/10)"),
  v4("127.0.0.0/8", "loopback (127.0.0.0/8)"),
  v4("169.254.0.0/16", "link-local (169.254.0.0/16, cloud metadata)"),
  v4("172.16.0.0/12", "private (172.16.0.0/12)"),
  v4("192.0.0.0/24", "IETF protocol assignments (192.0.0.0/24)"),
  v4("192.0.2.0/24", "documentation (192.0.2.0/24)"),
  v4("192.88.99.0/24", "6to4 relay anycast (192.88.99.0/24)"),
  v4("192.168.0.0/16", "private (192.168.0.0/16)"),
  v4("198.18.0.0/15", "benchmarking (198.18.0.0/15)"),
  v4("198.51.100.0/24", "documentation (198.51.100.0/24)"),
  v4("203.0.113.0/24", "documentation (203.0.113.0/24)"),
  v4("224.0.0.0/4", "multicast (224.0.0.0/4)"),
  v4("240.0.0.0/4", "reserved (240.0.0.0/4)"),
];

function inRange(bytes: readonly number[], range: Range): boolean {
  let bits = range.prefix;
  for (let i = 0; bits > 0; i++, bits -= 8) {
    const mask = bits >= 8 ? 0xff : (0xff << (8 - bits)) & 0xff;
    if (((bytes[i] ?? 0) & mask) !== ((range.bytes[i] ?? 0) & mask)) return false;
  }
  return true;
}

function parseIpv4(address: string): number[] | undefined {
  const parts = address.split(".");
  if (parts.length !== 4 || !parts.every((p) => /^\d{1,3}$/.test(p) && Number(p) <= 255)) return undefined;
  return parts.map(Number);
}

/** 16 bytes of an IPv6 address (with `::` and a trailing dotted quad), or undefined. */
export function parseIpv6(address: string): number[] | undefined {
  let text = address.toLowerCase().replace(/^\[|\]$/g, "");
  const zone = text.indexOf("%");
  if (zone >= 0) text = text.slice(0, zone);
  const tail: number[] = [];
  const lastColon = text.lastIndexOf(":");
  if (text.slice(lastColon + 1).includes(".")) {
    const quad = parseIpv4(text.slice(lastColon + 1));
    if (!quad) return undefined;
    tail.push(...quad);
    text = `${text.slice(0, lastColon + 1)}0:0`;
  }
  const halves = text.split("::");
  if (halves.length > 2) return undefined;
  const groups = (part: string | undefined) => (part ? part.split(":") : []);
  const head = groups(halves[0]);
  const rest = groups(halves[1]);
  const missing = 8 - head.length - rest.length;
  if (halves.length === 1 ? missing !== 0 : missing < 0) return undefined;
  const all = [...head, ...Array.from({ length: halves.length === 2 ? missing : 0 }, () => "0"), ...rest];
  if (all.length !== 8 || !all.every((g) => /^[0-9a-f]{1,4}$/.test(g))) return undefined;
  const bytes = all.flatMap((g) => {
    const value = parseInt(g, 16);
    return [value >> 8, value & 0xff];
  });
  if (tail.length === 4) bytes.splice(12, 4, ...tail);
  return bytes;
}

function classifyIpv4(bytes: readonly number[]): string | undefined {
  if (bytes.every((b) => b === 255)) return "broadcast (255.255.255.255)";
  return IPV4_RANGES.find((range) => inRange(bytes, range))?.label;
}

const startsWith = (bytes: readonly number[], prefix: readonly number[]) => prefix.every((b, i) => bytes[i] === b);

function classifyIpv6(bytes: readonly number[]): string | undefined {
  const embedded = (from: number, label: string) => {
    const inner = bytes.slice(from, from + 4);
    const reason = classifyIpv4(inner);
    return reason ? `${label} ${inner.join(".")}: ${reason}` : undefined;
  };
  const zeros = (n: number) => Array.from({ length: n }, () => 0);
  if (bytes.every((b) => b === 0)) return "unspecified (::)";
  if (startsWith(bytes, [...zeros(15), 1])) return "loopback (::1)";
  if (startsWith(bytes, [...zeros(10), 0xff, 0xff])) return embedded(12, "IPv4-mapped") ?? undefined;
  if (startsWith(bytes, [...zeros(8), 0xff, 0xff, 0, 0])) return embedded(12, "IPv4-translated") ?? "IPv4-translated (::ffff:0:0:0/96)";
  if (startsWith(bytes, zeros(12))) return embedded(12, "IPv4-compatible") ?? "IPv4-compatible (::/96)";
  if (startsWith(bytes, [0, 0x64, 0xff, 0x9b, ...zeros(8)])) return embedded(12, "NAT64") ?? undefined;
  if (startsWith(bytes, [0, 0x64, 0xff, 0x9b, 0, 1])) return "local-use NAT64 (64:ff9b:1::/48)";
  if (startsWith(bytes, [0x20, 0x02])) return embedded(2, "6to4") ?? undefined;
  if (startsWith(bytes, [0x20, 0x01, 0, 0])) return "Teredo (2001::/32)";
  if (startsWith(bytes, [0x20, 0x01, 0x0d, 0xb8])) return "documentation (2001:db8::/32)";
  if (startsWith(bytes, [0x01, 0, 0, 0, 0, 0, 0, 0])) return "discard (100::/64)";
  const first = bytes[0] ?? 0;
  const second = bytes[1] ?? 0;
  if ((first & 0xfe) === 0xfc) return "unique-local (fc00::/7)";
  if (first === 0xfe && (second & 0xc0) === 0x80) return "link-local (fe80::/10)";
  if (first === 0xfe && (second & 0xc0) === 0xc0) return "site-local (fec0::/10)";
  if (first === 0xff) return "multicast (ff00::/8)";
  return undefined;
}

/**
 * Why an IP address is not public, or undefined when it is. Accepts dotted
 * IPv4 and any IPv6 text form (brackets and zone ids allowed).
 */
export function nonPublicReason(address: string): string | undefined {
  const bare = address.replace(/^\[|\]$/g, "");
  const family = isIP(bare.split("%")[0] ?? "");
  if (family === 4) {
    const bytes = parseIpv4(bare);
    return bytes ? classifyIpv4(bytes) : "not an IPv4 address";
  }
  if (family === 6) {
    const bytes = parseIpv6(bare);
    return bytes ? classifyIpv6(bytes) : "not an IPv6 address";
  }
  return "not an IP address";
}

/** Loopback: 127.0.0.0/8, ::1 and their mapped forms. */
export function isLoopbackAddress(address: string): boolean {
  const reason = nonPublicReason(address) ?? "";
  return reason.startsWith("loopback") || /^IPv4-(mapped|compatible) 127\./.test(reason);
}

/** Lowercase, brackets and trailing dots removed: `LOCALHOST.` → `localhost`. */
export function normalizeHost(hostname: string): string {
  return hostname.toLowerCase().replace(/^\[|\]$/g, "").replace(/\.+$/, "");
}

/** Names that only mean something inside a private network. */
function privateNameReason(host: string): string | undefined {
  if (host === "localhost" || host.endsWith(".localhost")) return "loopback name (localhost)";
  if (host.endsWith(".internal") || host === "internal") return "internal name (.internal)";
  if (host.endsWith(".local")) return "link-local name (.local)";
  return undefined;
}

/**
 * Checks a destination URL at config time; returns the reason it is refused,
 * or undefined. `key` names the config key in the message.
 */
export function destinationUrlProblem(value: string, key: string, policy: AddressPolicy): string | undefined {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    return `${key} is not a URL`;
  }
  if (url.username !== "" || url.password !== "") {
    return `${key} must not carry credentials in the URL (user:password@); use the destination's secret`;
  }
  if (url.port === "0") return `${key} must not use port 0`;
  const host = normalizeHost(url.hostname);
  const literal = isIP(host) !== 0;
  const reason = literal ? nonPublicReason(host) : privateNameReason(host);
  const loopback = literal ? isLoopbackAddress(host) : host === "localhost" || host.endsWith(".localhost");
  if (url.protocol === "http:") {
    if (!(policy.localStage && loopback)) {
      return `${key} must be an https URL (plain http only to a loopback host on the local stage), got ${url.protocol}//${url.host}`;
    }
    return undefined;
  }
  if (url.protocol !== "https:") return `${key} must be an https URL, got ${url.protocol}`;
  if (reason === undefined || policy.allowPrivate || (policy.localStage && loopback)) return undefined;
  return `${key} points at a non-public address (${host}: ${reason}); set "allow_private_network": true on the destination to allow an internal endpoint`;
}

/** Send-time rule for one resolved address (undefined = may connect). */
export function resolvedAddressProblem(host: string, address: string, policy: AddressPolicy): string | undefined {
  const reason = nonPublicReason(address);
  if (reason === undefined || policy.allowPrivate) return undefined;
  if (policy.localStage && isLoopbackAddress(address)) return undefined;
  return `${host} resolves to ${address}, a non-public address (${reason}); refused (allow_private_network is not set)`;
}
