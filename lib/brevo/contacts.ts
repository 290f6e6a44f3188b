import * as z from "../util/zod.js";
import { parseJsonWith } from "../util/json.js";
import type { IdentityMode } from "../config/mapping.js";
import { CONTACT_EMAIL_TARGET, type BrevoConfig } from "../config/brevo.js";
import { identifierValue } from "./identity.js";

/**
 * Pure: one queued Mixpanel /engage update (one operation, docs/vendors/mixpanel-api.md §6)
 * → one Brevo contact operation (docs/vendors/brevo-connector.md §2). README "Brevo" has the table:
 *
 * | /engage     | Brevo                                                                                  |
 * |-------------|----------------------------------------------------------------------------------------|
 * | `$set`      | `POST /v3/contacts` upsert (`updateEnabled: true`), mapped attributes, `listIds`        |
 * | `$set_once` | read the contact; create it, or `PUT` only the attributes it does not have yet          |
 * | `$add`      | read the contact; `PUT` attribute = current (0 when empty) + increment (numbers only)   |
 * | `$union`    | read; `PUT` the multiple-choice attribute = current ∪ values (strings)                  |
 * | `$append`   | as `$union`: a Brevo multiple-choice attribute is a set, so a repeated value is kept once |
 * | `$remove`   | read; `PUT` the attribute = current without the values                                  |
 * | `$unset`    | `POST /v3/contacts/import` of the contact's email with the mapped attributes empty and  |
 * |             | `emptyContactsAttributes: true` (the documented way to erase; `null` is a wrong-typed    |
 * |             | value Brevo ignores); needs `brevo.lists.all_users` (the import names a list)           |
 * | `$delete`   | `DELETE /v3/contacts/{id}` (404 = already gone)                                          |
 *
 * Only properties named in `brevo.property_mapping` reach Brevo (attributes must already exist
 * there, §2 "Attributes"); `"$email": "email"` makes the value the contact's email. The contact
 * is addressed by `ext_id` (the canonical id, lib/brevo/identity.ts), else by the configured
 * email or phone identifier. A record with no usable key is skipped (`no_identifier`), one with
 * nothing mapped (other than `$set`, which still creates the contact and adds it to the list)
 * is skipped (`nothing_mapped`).
 */
export type ContactKey = { readonly type: "ext_id" | "email_id" | "phone_id"; readonly value: string };
export type AttributeValue = string | number | boolean | string[] | null;

export type ContactOperation =
  | {
      readonly op: "upsert";
      readonly key: ContactKey;
      readonly extId?: string;
      readonly email?: string;
      readonly attributes: Record<string, AttributeValue>;
      readonly listIds: number[];
      /** `$set_once`: attributes the contact already has are not overwritten. */
      readonly onlyIfAbsent: boolean;
      /** Company markers ("<group key>:<group id>") to link the contact to (brevo.companies.group_keys). */
      readonly companyLinks?: string[];
    }
  | { readonly op: "add"; readonly key: ContactKey; readonly increments: Record<string, number>; readonly listIds: number[] }
  | { readonly op: "list"; readonly key: ContactKey; readonly mode: "union" | "append" | "remove"; readonly values: Record<string, string[]>; readonly listIds: number[] }
  | { readonly op: "unset"; readonly key: ContactKey; readonly attributes: string[] }
  | { readonly op: "delete"; readonly key: ContactKey };

export type ContactResult =
  | { readonly status: "send"; readonly operation: ContactOperation }
  | { readonly status: "skip"; readonly code: "no_identifier" | "nothing_mapped"; readonly reason: string }
  | { readonly status: "reject"; readonly code: "unreadable_record"; readonly reason: string };

const engageSchema = z.catchall(z.object({ $distinct_id: z.pipe(z.union([z.string(), z.number()]), z.transform(String)) }), z.unknown());

function attributeValue(value: unknown): AttributeValue | undefined {
  if (value === null) return null;
  if (typeof value === "string" || typeof value === "boolean") return value;
  if (typeof value === "number") return Number.isFinite(value) ? value : undefined;
  if (Array.isArray(value)) return value.map((item) => (typeof item === "string" ? item : JSON.stringify(item)));
  if (value === undefined) return undefined;
  return JSON.stringify(value);
}

function targetOf(config: BrevoConfig, property: string): string | undefined {
  return Object.hasOwn(config.property_mapping, property) ? config.property_mapping[property] : undefined;
}

function record(value: unknown): Record<string, unknown> {
  return value !== null && typeof value === "object" && !Array.isArray(value) ? Object.fromEntries(Object.entries(value)) : {};
}

export function contactKeyFor(
  distinctId: string,
  properties: Readonly<Record<string, unknown>>,
  config: BrevoConfig,
  mode: IdentityMode,
): ContactKey | undefined {
  for (const type of ["ext_id", "email_id", "phone_id"] as const) {
    const source = config.identifiers[type];
    if (source === undefined) continue;
    const value = identifierValue(source, distinctId, properties, mode);
    if (value !== undefined) return { type, value };
  }
  return undefined;
}

export function mapProfileToContact(line: string, config: BrevoConfig, mode: IdentityMode): ContactResult {
  const parsed = parseJsonWith(engageSchema, line);
  if (!parsed.success) return { status: "reject", code: "unreadable_record", reason: "not a Mixpanel /engage update" };
  const update = parsed.data;
  const op = ["$set", "$set_once", "$add", "$union", "$append", "$remove", "$unset", "$delete"].find((name) => Object.hasOwn(update, name));
  if (op === undefined) return { status: "reject", code: "unreadable_record", reason: "no /engage operation" };
  const value = update[op];
  const properties = record(value);
  // Identifiers other than the distinct id (e.g. "$email") are read from the operation's properties.
  const key = contactKeyFor(update.$distinct_id, properties, config, mode);
  if (key === undefined) return { status: "skip", code: "no_identifier", reason: `profile ${op} carries none of the identifiers in brevo.identifiers` };
  const listIds = config.lists.all_users !== undefined ? [config.lists.all_users] : [];
  const nothing = (): ContactResult => ({ status: "skip", code: "nothing_mapped", reason: `profile ${op} touches no property in brevo.property_mapping` });

  switch (op) {
    case "$delete":
      return { status: "send", operation: { op: "delete", key } };
    case "$unset": {
      const names = Array.isArray(value) ? value.filter((name): name is string => typeof name === "string") : [];
      const attributes = [...new Set(names.map((name) => targetOf(config, name)).filter((t): t is string => t !== undefined && t !== CONTACT_EMAIL_TARGET))];
      return attributes.length > 0 ? { status: "send", operation: { op: "unset", key, attributes } } : nothing();
    }
    case "$add": {
      const increments: Record<string, number> = {};
      for (const [name, amount] of Object.entries(properties)) {
        const target = targetOf(config, name);
        if (target !== undefined && target !== CONTACT_EMAIL_TARGET && typeof amount === "number" && Number.isFinite(amount)) {
          increments[target] = (increments[target] ?? 0) + amount;
        }
      }
      return Object.keys(increments).length > 0 ? { status: "send", operation: { op: "add", key, increments, listIds } } : nothing();
    }
    case "$union":
    case "$append":
    case "$remove": {
      const values: Record<string, string[]> = {};
      for (const [name, raw] of Object.entries(properties)) {
        const target = targetOf(config, name);
        if (target === undefined || target === CONTACT_EMAIL_TARGET) continue;
        // $append/$remove take one value per property, $union a list (§6).
        const items = Array.isArray(raw) ? raw : [raw];
        values[target] = items.filter((item) => item !== null && item !== undefined).map((item) => (typeof item === "string" ? item : JSON.stringify(item)));
      }
      if (Object.keys(values).length === 0) return nothing();
      const mode = op === "$union" ? "union" : op === "$append" ? "append" : "remove";
      return { status: "send", operation: { op: "list", key, mode, values, listIds } };
    }
    default: {
      // $set and $set_once.
      const attributes: Record<string, AttributeValue> = {};
      let email: string | undefined;
      for (const [name, raw] of Object.entries(properties)) {
        const target = targetOf(config, name);
        if (target === undefined) continue;
        if (target === CONTACT_EMAIL_TARGET) {
          if (typeof raw === "string" && raw.trim() !== "") email = raw.trim();
          continue;
        }
        const converted = attributeValue(raw);
        if (converted !== undefined) attributes[target] = converted;
      }
      const companyLinks: string[] = [];
      if (config.sync.groups) {
        for (const groupKey of config.companies.group_keys) {
          const ids = Object.hasOwn(properties, groupKey) ? properties[groupKey] : undefined;
          for (const id of Array.isArray(ids) ? ids : [ids]) {
            if ((typeof id === "string" && id !== "") || (typeof id === "number" && Number.isFinite(id))) companyLinks.push(`${groupKey}:${String(id)}`);
          }
        }
      }
      if (op === "$set_once" && Object.keys(attributes).length === 0 && email === undefined && companyLinks.length === 0) return nothing();
      const extId = key.type === "ext_id" ? key.value : undefined;
      return {
        status: "send",
        operation: {
          op: "upsert",
          key,
          ...(extId !== undefined ? { extId } : {}),
          ...(email !== undefined ? { email } : key.type === "email_id" ? { email: key.value } : {}),
          attributes,
          listIds,
          onlyIfAbsent: op === "$set_once",
          ...(companyLinks.length > 0 ? { companyLinks } : {}),
        },
      };
    }
  }
}

/**
 * Pure: the attributes a read-modify-write operation writes, given the contact's current
 * attributes (`undefined` = the contact does not exist yet).
 */
export function attributesAfter(operation: ContactOperation, current: Readonly<Record<string, unknown>> | undefined): Record<string, AttributeValue> {
  const now = current ?? {};
  const has = (name: string) => Object.hasOwn(now, name) && now[name] !== null && now[name] !== "" && now[name] !== undefined;
  switch (operation.op) {
    case "upsert": {
      if (!operation.onlyIfAbsent) return { ...operation.attributes };
      return Object.fromEntries(Object.entries(operation.attributes).filter(([name]) => !has(name)));
    }
    case "add":
      return Object.fromEntries(
        Object.entries(operation.increments).map(([name, amount]) => {
          const base = now[name];
          const start = typeof base === "number" ? base : typeof base === "string" && base.trim() !== "" && Number.isFinite(Number(base)) ? Number(base) : 0;
          return [name, start + amount];
        }),
      );
    case "list":
      return Object.fromEntries(
        Object.entries(operation.values).map(([name, values]) => {
          const base = now[name];
          const existing = Array.isArray(base) ? base.map(String) : typeof base === "string" && base !== "" ? [base] : [];
          if (operation.mode === "remove") return [name, existing.filter((item) => !values.includes(item))];
          return [name, [...new Set([...existing, ...values])]];
        }),
      );
    case "unset":
      // An empty field erases the attribute in an import with emptyContactsAttributes: true (§2 "Attributes").
      return Object.fromEntries(operation.attributes.map((name) => [name, ""]));
    case "delete":
      return {};
  }
}
