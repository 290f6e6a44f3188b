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
