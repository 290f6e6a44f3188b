import * as z from "../util/zod.js";
import { parseJsonWith } from "../util/json.js";
import type { BrevoConfig } from "../config/brevo.js";

/**
 * Pure: one queued Mixpanel /groups update → one Brevo company operation
 * (docs/vendors/brevo-connector.md §3). A company is identified by the custom attribute
 * `brevo.companies.id_attribute` = "<group key>:<group id>", so a later update finds the
 * same company instead of creating another (`POST /v3/companies` is not idempotent, §3).
 *
 * | /groups     | Brevo                                                                             |
 * |-------------|-----------------------------------------------------------------------------------|
 * | `$set`      | find by the id attribute; `PATCH /v3/companies/{id}` or `POST /v3/companies`       |
 * | `$set_once` | as `$set`, but only on create (an existing company keeps its values)               |
 * | `$unset`    | `PATCH` the mapped attributes to `null`                                            |
 * | `$delete`   | `DELETE /v3/companies/{id}` (absent = done)                                        |
 * | `$union`, `$remove` | not mapped (skipped, `not_mappable`): company attributes have no list merge |
 *
 * The name is the group property `brevo.companies.name_property` (default `$name`), else the
 * group id. Other properties reach Brevo only through `brevo.companies.property_mapping`.
 */
export type CompanyOperation =
  | {
      readonly op: "upsert";
      readonly marker: string;
      readonly name: string;
      readonly attributes: Record<string, string | number | boolean | null>;
      readonly onlyOnCreate: boolean;
    }
  | { readonly op: "unset"; readonly marker: string; readonly attributes: string[] }
  | { readonly op: "delete"; readonly marker: string };

export type CompanyResult =
  | { readonly status: "send"; readonly operation: CompanyOperation }
  | { readonly status: "skip"; readonly code: "not_mappable"; readonly reason: string }
  | { readonly status: "reject"; readonly code: "unreadable_record"; readonly reason: string };

const groupSchema = z.catchall(
  z.object({
    $group_key: z.string().check(z.minLength(1)),
    $group_id: z.pipe(z.union([z.string().check(z.minLength(1)), z.number()]), z.transform(String)),
  }),
  z.unknown(),
);

export function companyMarker(groupKey: string, groupId: string): string {
  return `${groupKey}:${groupId}`;
}

function scalar(value: unknown): string | number | boolean | null | undefined {
  if (value === null || typeof value === "string" || typeof value === "boolean") return value;
  if (typeof value === "number") return Number.isFinite(value) ? value : undefined;
  if (value === undefined) return undefined;
  return JSON.stringify(value);
}

export function mapGroupToCompany(line: string, config: BrevoConfig): CompanyResult {
  const parsed = parseJsonWith(groupSchema, line);
  if (!parsed.success) return { status: "reject", code: "unreadable_record", reason: "not a Mixpanel /groups update" };
  const update = parsed.data;
  const marker = companyMarker(update.$group_key, update.$group_id);
  const mapping = config.companies.property_mapping;
  const target = (name: string) => (Object.hasOwn(mapping, name) ? mapping[name] : undefined);
  if (Object.hasOwn(update, "$delete")) return { status: "send", operation: { op: "delete", marker } };
  if (Object.hasOwn(update, "$unset")) {
    const names = Array.isArray(update.$unset) ? update.$unset.filter((name): name is string => typeof name === "string") : [];
    const attributes = [...new Set(names.map(target).filter((name): name is string => name !== undefined))];
    if (attributes.length === 0) return { status: "skip", code: "not_mappable", reason: "$unset touches no property in brevo.companies.property_mapping" };
    return { status: "send", operation: { op: "unset", marker, attributes } };
  }
  const op = Object.hasOwn(update, "$set") ? "$set" : Object.hasOwn(update, "$set_once") ? "$set_once" : undefined;
  if (op === undefined) {
    return { status: "skip", code: "not_mappable", reason: "only $set, $set_once, $unset and $delete map to Brevo companies" };
  }
  const raw = update[op];
  const properties = raw !== null && typeof raw === "object" && !Array.isArray(raw) ? Object.fromEntries(Object.entries(raw)) : {};
  const attributes: Record<string, string | number | boolean | null> = {};
  for (const [name, value] of Object.entries(properties)) {
    const attribute = target(name);
    const converted = scalar(value);
    if (attribute !== undefined && converted !== undefined) attributes[attribute] = converted;
  }
  const named = properties[config.companies.name_property];
  const name = typeof named === "string" && named.trim() !== "" ? named.trim() : update.$group_id;
  return { status: "send", operation: { op: "upsert", marker, name, attributes, onlyOnCreate: op === "$set_once" } };
}
