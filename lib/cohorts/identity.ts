import { ValidationError } from "../util/errors.js";
import { parseJsonOrThrow } from "../util/json.js";
import type { CohortSync } from "../config/cohort-syncs.js";

/**
 * A member's identity: the JSON of the identity properties it has (`$email`, the Braze
 * external id property), "" when it has none. A snapshot keeps it so a member who leaves
 * the cohort can be removed at a destination that addresses members by those properties,
 * after the member is gone from the export (docs/vendors/cohort-sync.md §2). Written
 * with JSON.stringify, so it never holds a raw newline (snapshot-v3.ts relies on that).
 */
export function identityOf(properties: Record<string, unknown>, identityKeys: readonly string[]): string {
  const picked: Record<string, unknown> = {};
  let any = false;
  for (const key of identityKeys) {
    const value = properties[key];
    if (value !== undefined && value !== null && value !== "") {
      picked[key] = value;
      any = true;
    }
  }
  return any ? JSON.stringify(picked) : "";
}

/**
 * A stored identity that is not the JSON object identityOf writes. The member's
 * id is still known, so the caller decides what it can still do without the
 * properties, and says so; it never reads as "no identity properties".
 */
export class CorruptIdentityError extends ValidationError {
  override readonly name = "CorruptIdentityError";
  constructor(readonly reason: string) {
    super(`stored identity ${reason}`);
  }
}

/** The properties of a stored identity ("" = none); CorruptIdentityError with its reason otherwise. */
export function parseIdentity(identity: string): Record<string, unknown> {
  if (identity === "") return {};
  const value = parseJsonOrThrow(identity, () => new CorruptIdentityError("is not JSON"));
  if (value === null || typeof value !== "object" || Array.isArray(value)) throw new CorruptIdentityError("is not a JSON object");
  return { ...value };
}

/**
 * The key a destination finds a member by, when it is not the distinct id:
 * Brevo the email, Braze the external id property. undefined = keyed by id.
 */
export function destinationKey(sync: CohortSync, props: Record<string, unknown>): string | undefined {
  const destination = sync.destination;
  switch (destination.type) {
    case "webhook":
      return undefined;
    case "brevo": {
      const email = props[destination.email_property];
      return typeof email === "string" ? email.trim().toLowerCase() : undefined;
    }
    case "braze": {
      if (!destination.external_id_property) return undefined;
      const id = props[destination.external_id_property];
      return id === undefined || id === null ? undefined : String(id);
    }
    default: {
      const unhandled: never = destination;
      throw new Error(`unhandled destination ${JSON.stringify(unhandled)}`);
    }
  }
}
