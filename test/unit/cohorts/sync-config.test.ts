import { describe, expect, it } from "vitest";
import { parseStageConfig } from "../../../lib/config/stage.js";
import { outputPropertiesFor, rateToMs, scheduleProblems } from "../../../lib/config/cohort-syncs.js";

const webhook = { type: "webhook", url: "https://hooks.example.com/mp", signing_secret: "relay/hook" };

describe("cohort_syncs config", () => {
  it("applies defaults and accepts the three destinations", () => {
    const config = parseStageConfig(
      {
        cohort_syncs: [
          { id: "hook", cohort_id: 1, destination: webhook },
          { id: "brevo", cohort_id: 2, mode: "full", destination: { type: "brevo", list_id: 9, api_key_secret: "relay/brevo" } },
          {
            id: "braze",
            cohort_id: 3,
            schedule: "rate(2 hours)",
            full_resync_every: "rate(7 days)",
            destination: { type: "braze", rest_endpoint: "https://rest.iad-01.braze.com", api_key_secret: "relay/braze", external_id_property: "$braze_external_id" },
          },
        ],
      },
      "test",
    );
    const [hook, brevo, braze] = config.cohort_syncs;
    expect(hook).toMatchObject({ mode: "diff", schedule: "rate(30 minutes)", resync_window: "rate(3 days)", include_all_users: true });
    expect(brevo?.destination).toMatchObject({ attributes: { $first_name: "FIRSTNAME", $last_name: "LASTNAME" }, base_url: "https://api.brevo.com/v3" });
    expect(braze?.destination).toMatchObject({ attribute: "mixpanel_cohorts", update_existing_only: true });
    expect(braze && outputPropertiesFor(braze)).toContain("$braze_external_id");
  });

  it.each([
    [{ id: "x", cohort_id: 1, destination: { ...webhook, signing_secret: "has spaces" } }, "cohort_syncs.0.destination.signing_secret"],
    [{ id: "x", cohort_id: 1, destination: { ...webhook, api_key: "xkeysib-plain" } }, "cohort_syncs.0.destination"],
    [{ id: "x", cohort_id: 1, destination: webhook, schedule: "cron(0 * * * ? *)" }, "cohort_syncs.0.schedule"],
    [{ id: "x", cohort_id: "1", destination: webhook }, "cohort_syncs.0.cohort_id"],
    [{ id: "x", cohort_id: 1, destination: { type: "brevo", list_id: 1, api_key_secret: "k", attributes: { $first_name: "firstname" } } }, "cohort_syncs.0.destination.attributes.$first_name"],
    [{ id: "Bad Id", cohort_id: 1, destination: webhook }, "cohort_syncs.0.id"],
  ])("names the bad key (%#)", (sync, key) => {
    expect(() => parseStageConfig({ cohort_syncs: [sync] }, "test")).toThrow(key);
  });

  it.each([
    [{ ...webhook, url: "http://hooks.example.com/mp" }, "url"],
    [{ ...webhook, url: "http://127.0.0.1.nip.io/mp" }, "url"],
    [{ type: "brevo", list_id: 1, api_key_secret: "k", base_url: "http://api.brevo.com/v3" }, "base_url"],
    [{ type: "braze", rest_endpoint: "http://rest.iad-01.braze.com", api_key_secret: "k" }, "rest_endpoint"],
  ])("refuses a plain-http destination outside loopback and names the key (%#)", (destination, key) => {
    const run = () => parseStageConfig({ cohort_syncs: [{ id: "x", cohort_id: 1, destination }] }, "test");
    expect(run).toThrow(`cohort_syncs.0.destination.${key}: ${key} must be an https URL`);
  });

  it("refuses a non-http scheme", () => {
    const run = () => parseStageConfig({ cohort_syncs: [{ id: "x", cohort_id: 1, destination: { ...webhook, url: "ftp://h.example/x" } }] }, "test");
    expect(run).toThrow("cohort_syncs.0.destination.url");
  });

  it.each(["http://127.0.0.1:3002/hook", "http://localhost:8080/x", "http://[::1]:9000/x", "https://hooks.example.com/mp"])(
    "on the local stage, accepts https anywhere and http on loopback: %s",
    (url) => {
      const config = parseStageConfig(
        {
          cohort_syncs: [
            { id: "w", cohort_id: 1, destination: { ...webhook, url } },
            { id: "b", cohort_id: 1, destination: { type: "brevo", list_id: 1, api_key_secret: "k", base_url: url } },
            { id: "z", cohort_id: 1, destination: { type: "braze", rest_endpoint: url, api_key_secret: "k" } },
          ],
        },
        "test",
        "local",
      );
      expect(config.cohort_syncs).toHaveLength(3);
    },
  );

  it("rejects duplicate sync ids", () => {
    const sync = { id: "dup", cohort_id: 1, destination: webhook };
    expect(() => parseStageConfig({ cohort_syncs: [sync, sync] }, "t")).toThrow(/cohort_syncs.1.id: duplicate/);
  });

  it("parses EventBridge-style rates", () => {
    expect(rateToMs("rate(1 minute)")).toBe(60_000);
    expect(rateToMs("rate(30 minutes)")).toBe(1_800_000);
    expect(rateToMs("rate(1 minutes)")).toBeUndefined();
    expect(rateToMs("rate(3 days)")).toBe(259_200_000);
  });
});

describe("schedules against the export tick", () => {
  const syncs = (schedule: string) =>
    parseStageConfig({ cohort_syncs: [{ id: "a", cohort_id: 1, destination: webhook }, { id: "b", cohort_id: 2, destination: webhook, schedule }] }, "test").cohort_syncs;

  it("a schedule shorter than the tick is a config error naming the key", () => {
    expect(scheduleProblems(syncs("rate(5 minutes)"), 15 * 60_000)).toEqual([
      expect.stringMatching(/^cohort_syncs\.1\.schedule: "rate\(5 minutes\)" is shorter than the stage's export tick \(15 min\)/),
    ]);
    expect(scheduleProblems(syncs("rate(15 minutes)"), 15 * 60_000)).toEqual([]);
    expect(scheduleProblems(syncs("once"), 15 * 60_000)).toEqual([]);
  });

  it('accepts "once" and names the key for anything else that is not a rate', () => {
    expect(syncs("once")[1]?.schedule).toBe("once");
    expect(() => syncs("twice")).toThrow(/cohort_syncs\.1\.schedule: must be "once" or an interval/);
  });
});
