import { describe, expect, it } from "vitest";
import { parseStageConfig } from "../../../lib/config/stage.js";
import { destinationUrlProblem, nonPublicReason, resolvedAddressProblem } from "../../../lib/util/address-policy.js";

/**
 * The SSRF matrix: every spelling of a non-public address is refused at config
 * validation with the key named; the opt-in and the local stage let exactly
 * what they promise through.
 */
const deployed = { allowPrivate: false, localStage: false };
const optedIn = { allowPrivate: true, localStage: false };
const local = { allowPrivate: false, localStage: true };

const REFUSED: [url: string, why: RegExp][] = [
  ["https://169.254.169.254/latest/meta-data", /link-local/],
  ["https://10.0.0.1/hook", /private \(10/],
  ["https://10.255.255.255/hook", /private \(10/],
  ["https://172.16.0.1/hook", /private \(172\.16/],
  ["https://172.31.255.254/hook", /private \(172\.16/],
  ["https://192.168.1.10/hook", /private \(192\.168/],
  ["https://100.64.0.1/hook", /carrier-grade NAT/],
  ["https://100.127.255.255/hook", /carrier-grade NAT/],
  ["https://127.0.0.1/hook", /loopback/],
  ["https://127.1.2.3/hook", /loopback/],
  ["https://0.0.0.0/hook", /unspecified/],
  ["https://2130706433/hook", /loopback/], // decimal 127.0.0.1
  ["https://0x7f.1/hook", /loopback/], // hex, short form
  ["https://0x7f000001/hook", /loopback/],
  ["https://017700000001/hook", /loopback/], // octal
  ["https://0251.0376.0251.0376/hook", /link-local/], // octal 169.254.169.254
  ["https://0xa9fea9fe/hook", /link-local/], // hex 169.254.169.254
  ["https://[::1]/hook", /loopback/],
  ["https://[0:0:0:0:0:0:0:1]/hook", /loopback/],
  ["https://[::]/hook", /unspecified/],
  ["https://[fd00::1]/hook", /unique-local/],
  ["https://[fc12:3456::1]/hook", /unique-local/],
  ["https://[fe80::1]/hook", /link-local/],
  ["https://[::ffff:127.0.0.1]/hook", /IPv4-mapped 127\.0\.0\.1/],
  ["https://[::ffff:7f00:1]/hook", /IPv4-mapped 127\.0\.0\.1/],
  ["https://[::ffff:169.254.169.254]/hook", /IPv4-mapped 169\.254/],
  ["https://[::ffff:10.1.2.3]/hook", /IPv4-mapped 10\./],
  ["https://[::127.0.0.1]/hook", /IPv4-compatible/],
  ["https://[::ffff:0:127.0.0.1]/hook", /IPv4-translated 127\.0\.0\.1/],
  ["https://[64:ff9b::a00:1]/hook", /NAT64 10\.0\.0\.1/],
  ["https://[2002:7f00:1::]/hook", /6to4 127\.0\.0\.1/],
  ["https://[ff02::1]/hook", /multicast/],
  ["https://localhost/hook", /localhost/],
  ["https://localhost./hook", /localhost/],
  ["https://LOCALHOST/hook", /localhost/],
  ["https://api.localhost/hook", /localhost/],
  ["https://metadata.google.internal/x", /internal/],
  ["https://printer.local/x", /\.local/],
];

describe("destination URLs at config time (SSRF matrix)", () => {
  it.each(REFUSED)("refuses %s", (url, why) => {
    const problem = destinationUrlProblem(url, "url", deployed);
    expect(problem).toMatch(/^url points at a non-public address/);
    expect(problem).toMatch(why);
  });

  it.each(REFUSED)("lets %s through when the destination opts in (allow_private_network)", (url) => {
    expect(destinationUrlProblem(url, "url", optedIn)).toBeUndefined();
  });

  it.each([
    ["https://user:pw@hooks.example.com/x", /must not carry credentials/],
    ["https://user@hooks.example.com/x", /must not carry credentials/],
    ["https://hooks.example.com:0/x", /port 0/],
    ["http://hooks.example.com/x", /must be an https URL/],
    ["http://127.0.0.1:3002/hook", /must be an https URL/], // http needs the local stage
    ["ftp://hooks.example.com/x", /must be an https URL/],
    ["not a url", /is not a URL/],
  ])("refuses %s whatever the opt-in", (url, why) => {
    expect(destinationUrlProblem(url, "url", deployed)).toMatch(why);
    expect(destinationUrlProblem(url, "url", optedIn)).toMatch(why);
  });

  it.each(["https://hooks.example.com/mp", "https://hooks.example.com./mp", "https://8.8.8.8/x", "https://[2606:4700::1111]/x", "https://[::ffff:8.8.8.8]/x", "https://api.brevo.com:443/v3"])(
    "accepts the public %s",
    (url) => {
      expect(destinationUrlProblem(url, "url", deployed)).toBeUndefined();
    },
  );

  it("the local stage allows loopback (http or https) but no other private range", () => {
    for (const url of ["http://127.0.0.1:3002/hook", "http://localhost:1/x", "http://[::1]:9/x", "https://127.0.0.1/x"]) {
      expect(destinationUrlProblem(url, "url", local)).toBeUndefined();
    }
    expect(destinationUrlProblem("http://10.0.0.1/x", "url", local)).toMatch(/https/);
    expect(destinationUrlProblem("https://10.0.0.1/x", "url", local)).toMatch(/non-public/);
    expect(destinationUrlProblem("http://192.168.0.1/x", "url", { allowPrivate: true, localStage: true })).toMatch(/https/);
  });

  it.each([
    ["webhook", { type: "webhook", url: "https://169.254.169.254/", signing_secret: "s" }, "cohort_syncs.0.destination.url"],
    ["brevo", { type: "brevo", list_id: 1, api_key_secret: "k", base_url: "https://[fd00::1]/v3" }, "cohort_syncs.0.destination.base_url"],
    ["braze", { type: "braze", rest_endpoint: "https://0x7f.1", api_key_secret: "k" }, "cohort_syncs.0.destination.rest_endpoint"],
  ])("the stage config names the key (%s)", (_type, destination, key) => {
    const run = () => parseStageConfig({ cohort_syncs: [{ id: "x", cohort_id: 1, destination }] }, "config/prod.json", "prod");
    expect(run).toThrow(key);
    expect(run).toThrow(/non-public address/);
    const optIn = { cohort_syncs: [{ id: "x", cohort_id: 1, destination: { ...destination, allow_private_network: true } }] };
    expect(parseStageConfig(optIn, "config/prod.json", "prod").cohort_syncs[0]?.destination.allow_private_network).toBe(true);
  });
});

describe("resolved addresses at send time", () => {
  it.each([
    ["10.0.0.5", /private/],
    ["127.0.0.1", /loopback/],
    ["169.254.169.254", /link-local/],
    ["::1", /loopback/],
    ["fd00::1", /unique-local/],
    ["::ffff:192.168.0.1", /IPv4-mapped 192\.168/],
  ])("refuses an answer of %s", (address, why) => {
    expect(resolvedAddressProblem("hooks.example.com", address, deployed)).toMatch(why);
    expect(resolvedAddressProblem("hooks.example.com", address, optedIn)).toBeUndefined();
  });

  it("accepts public answers, and loopback on the local stage only", () => {
    expect(resolvedAddressProblem("h", "93.184.216.34", deployed)).toBeUndefined();
    expect(resolvedAddressProblem("h", "2606:4700::1111", deployed)).toBeUndefined();
    expect(resolvedAddressProblem("h", "127.0.0.1", local)).toBeUndefined();
    expect(resolvedAddressProblem("h", "10.0.0.1", local)).toMatch(/private/);
  });

  it("classifies boundaries exactly", () => {
    expect(nonPublicReason("172.15.255.255")).toBeUndefined();
    expect(nonPublicReason("172.32.0.0")).toBeUndefined();
    expect(nonPublicReason("100.63.255.255")).toBeUndefined();
    expect(nonPublicReason("100.128.0.0")).toBeUndefined();
    expect(nonPublicReason("fbff::1")).toBeUndefined();
    expect(nonPublicReason("fec0::1")).toMatch(/site-local/);
  });
});
