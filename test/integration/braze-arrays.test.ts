import { afterEach, describe, expect, it } from "vitest";
import { type Harness, startHarness } from "../unit/cohorts/harness.js";
import { BrazeServer } from "../../infra/local/peers/braze-server.js";
import { brazeArrayGroups, usersOverLimit } from "../../lib/cohorts/braze-arrays.js";
import { cohortSyncsSchemaFor } from "../../lib/config/cohort-syncs.js";

/**
 * Braze keeps an array attribute to the workspace's array length and drops the rest without an
 * error. Users whose `mixpanel_cohorts` would pass `array_length_max` must be reported (run
 * report and metric), not lost silently.
 */
describe("Braze array length: memberships past array_length_max are reported", () => {
  let h: Harness | undefined;
  let braze: BrazeServer | undefined;
  afterEach(async () => {
    await braze?.close();
    await h?.close();
  });

  it("three cohort lanes into one array of length 2: the users in all three are counted in the report and the metric", async () => {
    braze = new BrazeServer({ apiKey: "braze-key", arrayLengthMax: 2 });
    const endpoint = await braze.start();
    const destination = (id: string) => ({
      type: "braze",
      id,
      rest_endpoint: endpoint,
      api_key_secret: "relay/braze",
      update_existing_only: false,
      array_length_max: 2,
    });
    h = await startHarness({
      cohorts: [
        { id: 1, name: "A", where: (p) => p.a === true },
        { id: 2, name: "B", where: (p) => p.b === true },
        { id: 3, name: "C", where: (p) => p.c === true },
      ],
      syncs: [
        { id: "in-a", cohort_id: 1, destinations: [destination("braze")] },
        { id: "in-b", cohort_id: 2, destinations: [destination("braze")] },
        { id: "in-c", cohort_id: 3, destinations: [destination("braze")] },
      ],
    });
    h.secrets.setSecret("relay/braze", { api_key: "braze-key" });
    h.profiles.set("all-three", { a: true, b: true, c: true });
    h.profiles.set("also-all", { a: true, b: true, c: true });
    h.profiles.set("two", { a: true, b: true });
    h.profiles.set("one", { c: true });
    const values: { name: string; value: number; syncId: string }[] = [];
    const metric = (name: string, value: number, syncId: string) => values.push({ name, value, syncId });

    const report = await h.runExport({}, { metric });
    await h.drain();
    expect(braze.truncations.map((t) => t.user).sort()).toEqual(["all-three", "also-all"]);
    for (const lane of ["in-a.braze", "in-b.braze", "in-c.braze"]) {
      expect(report.syncs[lane]?.brazeArrayOverflow).toEqual({ users: 2, limit: 2, attribute: "mixpanel_cohorts" });
    }
    expect(values.filter((m) => m.name === "BrazeArrayOverflow").map((m) => m.value)).toEqual([2, 2, 2]);
  });

  it("lanes that cannot pass the limit cost nothing: no group, no report", () => {
    const syncs = cohortSyncsSchemaFor({ localStage: true }).parse([
      { id: "x", cohort_id: 1, destination: { type: "braze", rest_endpoint: "http://127.0.0.1:9", api_key_secret: "k" } },
      { id: "y", cohort_id: 2, destination: { type: "braze", rest_endpoint: "http://127.0.0.1:9/", api_key_secret: "k" } },
    ]);
    expect(syncs[0]?.destination.type === "braze" && syncs[0].destination.array_length_max).toBe(25);
    expect(brazeArrayGroups(syncs)).toEqual([]);
    const tight = cohortSyncsSchemaFor({ localStage: true }).parse([
      { id: "x", cohort_id: 1, destination: { type: "braze", rest_endpoint: "http://127.0.0.1:9", api_key_secret: "k", array_length_max: 1 } },
      { id: "y", cohort_id: 2, destination: { type: "braze", rest_endpoint: "http://127.0.0.1:9/", api_key_secret: "k" } },
      { id: "z", cohort_id: 3, destination: { type: "braze", rest_endpoint: "http://127.0.0.1:9", api_key_secret: "k", attribute: "other" } },
    ]);
    expect(brazeArrayGroups(tight).map((g) => [g.limit, g.lanes.map((l) => l.id)])).toEqual([[1, ["x", "y"]]]);
  });

  it("counts distinct values per user, so two lanes writing the same value are one element", () => {
    const values = new Map([["a", "v1"], ["b", "v1"], ["c", "v2"]]);
    const memberships = new Map([["a", ["u1", "u2"]], ["b", ["u1"]], ["c", ["u1"]]]);
    expect(usersOverLimit(memberships, values, 1)).toBe(1);
    expect(usersOverLimit(memberships, values, 2)).toBe(0);
  });

  it("array_length_max is 1…100 (Braze's workspace setting), with an error naming the key", () => {
    const parse = (value: unknown) =>
      cohortSyncsSchemaFor({ localStage: true }).safeParse([
        { id: "x", cohort_id: 1, destination: { type: "braze", rest_endpoint: "http://127.0.0.1:9", api_key_secret: "k", array_length_max: value } },
      ]);
    expect(parse(100).success).toBe(true);
    const refused = parse(101);
    expect(refused.success).toBe(false);
    expect(JSON.stringify(refused.error?.issues)).toContain("array_length_max");
  });
});
