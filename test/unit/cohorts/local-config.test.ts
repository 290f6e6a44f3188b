import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { DEFAULT_LOCAL_RECEIVER_PORT, retargetLocalReceiver } from "../../../infra/local/cohorts.js";
import { parseStageConfig } from "../../../lib/config/stage.js";

/** `npm start` with WEBHOOK_RECEIVER_PORT: the cohort target of config/local.json follows the receiver. */
describe("config/local.json follows WEBHOOK_RECEIVER_PORT", () => {
  const raw: unknown = JSON.parse(readFileSync("config/local.json", "utf8"));

  it("names the receiver on its default port", () => {
    const config = parseStageConfig(raw, "config/local.json", "local");
    const destination = config.cohort_syncs[0]?.destination;
    expect(destination?.type === "webhook" && destination.url).toBe(`http://127.0.0.1:${DEFAULT_LOCAL_RECEIVER_PORT}/hook`);
  });

  it("moves the local receiver's URL to another port, and the result is still a valid local config", () => {
    const { config, moved } = retargetLocalReceiver(JSON.parse(JSON.stringify(raw)), 3999);
    expect(moved).toEqual(["http://127.0.0.1:3999/hook"]);
    const parsed = parseStageConfig(config, "moved", "local");
    const destination = parsed.cohort_syncs[0]?.destination;
    expect(destination?.type === "webhook" && destination.url).toBe("http://127.0.0.1:3999/hook");
  });

  it("leaves other destinations alone", () => {
    const other = { cohort_syncs: [{ destination: { type: "webhook", url: "https://hooks.example.com:3002/hook" } }, { destination: { type: "brevo" } }] };
    expect(retargetLocalReceiver(other, 4000).moved).toEqual([]);
    expect(retargetLocalReceiver(raw, DEFAULT_LOCAL_RECEIVER_PORT).moved).toEqual([]);
  });
});
