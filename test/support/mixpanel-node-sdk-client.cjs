// Drives the official `mixpanel` npm SDK against a relay, in its own process so it can
// trust the local intake's self-signed certificate (NODE_EXTRA_CA_CERTS is read at start).
// Input: one JSON argument {host, token, otherToken, secret, runId, nowMs, phase}. Phase 2 holds
// the calls whose effect depends on phase 1 having arrived (SQS does not keep order).
// Output: one JSON line {name: error message or null}.
"use strict";
const Mixpanel = require("mixpanel");

const plan = JSON.parse(process.argv[2]);
const base = { host: plan.host, protocol: "https", keepAlive: false };
const client = Mixpanel.init(plan.token, base);
const verbose = Mixpanel.init(plan.token, { ...base, verbose: true, geolocate: true });
const otherApp = Mixpanel.init(plan.otherToken, base);
const wrongToken = Mixpanel.init("not-a-project-token", base);
const importer = Mixpanel.init(plan.token, { ...base, secret: plan.secret });
const badSecret = Mixpanel.init(plan.token, { ...base, secret: "not-an-intake-token-at-all" });

const call = (fn) => new Promise((resolve) => fn((error) => resolve(error ? String(error.message ?? error) : null)));
const batchCall = (fn) =>
  new Promise((resolve) =>
    fn((errors) => resolve(errors && errors.length > 0 ? errors.map((e) => String(e.message ?? e)).join("; ") : null)),
  );

const run = plan.runId;
const tenDaysAgo = new Date(plan.nowMs - 10 * 24 * 3600 * 1000);
// Characters whose base64 has '+' and '/' (the SDK does not URL-encode its form body).
const awkward = "a>b?c~d ü 日本 ✓ +&=%";

(async () => {
  const results = {};
  if (plan.phase === 2) {
    results.peopleSetOnceAgain = await call((cb) => client.people.set_once(`${run}-ada`, "first_seen", "2030-01-01", cb));
    results.peopleIncrementBy = await call((cb) => client.people.increment(`${run}-ada`, "logins", 2, cb));
    results.peopleUnionAgain = await call((cb) => client.people.union(`${run}-ada`, { tags: ["b", "c"] }, cb));
    results.peopleUnset = await call((cb) => client.people.unset(`${run}-ada`, "tmp", cb));
    results.peopleDelete = await call((cb) => client.people.delete_user(`${run}-gone`, cb));
    process.stdout.write(`${JSON.stringify(results)}\n`);
    return;
  }
  results.track = await call((cb) => client.track("Signed Up", { distinct_id: `${run}-ada`, plan: "pro", awkward }, cb));
  results.trackVerbose = await call((cb) => verbose.track("Viewed Page", { distinct_id: `${run}-ada`, page: "/pricing" }, cb));
  results.trackOtherApp = await call((cb) => otherApp.track("Opened App", { distinct_id: `${run}-bob` }, cb));
  results.trackWrongToken = await call((cb) => wrongToken.track("Should Not Arrive", { distinct_id: `${run}-eve` }, cb));
  const batch = Array.from({ length: 120 }, (_, i) => ({
    event: "Batch Item",
    properties: { distinct_id: `${run}-batch-${i % 7}`, n: i, awkward, time: plan.nowMs - 1000 * i },
  }));
  results.trackBatch = await batchCall((cb) => client.track_batch(batch, cb));
  results.peopleSet = await call((cb) => client.people.set(`${run}-ada`, { $email: "ada@example.com", plan: "pro", tmp: 1 }, cb));
  results.peopleSetOnce = await call((cb) => client.people.set_once(`${run}-ada`, "first_seen", "2026-01-01", cb));
  results.peopleIncrement = await call((cb) => client.people.increment(`${run}-ada`, "logins", cb));
  results.peopleAppend = await call((cb) => client.people.append(`${run}-ada`, "visits", "/home", cb));
  results.peopleUnion = await call((cb) => client.people.union(`${run}-ada`, { tags: ["a", "b"] }, cb));
  results.peopleSetDoomed = await call((cb) => client.people.set(`${run}-gone`, { plan: "free" }, cb));
  results.groupsSet = await call((cb) => client.groups.set("company", `${run}-acme`, { name: "Acme", seats: 12 }, cb));
  results.importOne = await call((cb) => importer.import("Old Purchase", tenDaysAgo, { distinct_id: `${run}-ada`, amount: 42 }, cb));
  const imports = Array.from({ length: 60 }, (_, i) => ({
    event: "Old Visit",
    properties: { distinct_id: `${run}-ada`, time: tenDaysAgo.getTime() + i * 1000, n: i },
  }));
  results.importBatch = await batchCall((cb) => importer.import_batch(imports, cb));
  results.importBadSecret = await call((cb) => badSecret.import("Refused Import", tenDaysAgo, { distinct_id: `${run}-eve` }, cb));
  process.stdout.write(`${JSON.stringify(results)}\n`);
})().catch((error) => {
  process.stderr.write(String(error && error.stack ? error.stack : error));
  process.exit(1);
});
