import type { MappedItem } from "../sources/types.js";
import { type PiiPolicy, protectLine, scrubRejection } from "./policy.js";

/**
 * The PII step of every edge (HTTP intake, Currents reader): mapped records get the rules
 * before they are queued, rejected items' payloads before they are stored, so neither the
 * queue nor the rejected store ever holds a dropped or hashed property's raw value (nor a
 * rejection's reason, which may quote the value that made it fail).
 */
export function protectItems(items: readonly MappedItem[], policy: PiiPolicy | undefined): MappedItem[] {
  if (policy === undefined) return [...items];
  return items.map((item) =>
    item.ok ? { ...item, line: protectLine(item.kind, item.line, policy) } : { ...item, ...scrubRejection(item.payload, item.reason, policy) },
  );
}
