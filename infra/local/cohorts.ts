import type { CohortFixture } from "../../test/support/mixpanel-query.js";

/**
 * The local Mixpanel's cohorts: computed from the profiles it has received, so
 * a `$set` sent to the local intake moves a user in or out of a cohort and the
 * next export tick sends `add_members` / `remove_members` to the local receiver.
 */
export const LOCAL_COHORTS: CohortFixture[] = [
  {
    id: 1,
    name: "Pro users",
    description: "Profiles whose plan is pro (local sandbox cohort)",
    where: (properties) => properties.plan === "pro",
  },
  {
    id: 2,
    name: "Everyone with an email",
    description: "Profiles with $email (local sandbox cohort)",
    where: (properties) => typeof properties.$email === "string",
  },
];

/** Secret the local webhook sync signs with (config/local.json names it). */
export const LOCAL_WEBHOOK_SIGNING_SECRET_NAME = "mixpanel-relay/local/destinations/webhook-signing";
export const LOCAL_WEBHOOK_SIGNING_SECRET = "local-webhook-signing-secret";
