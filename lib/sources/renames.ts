/**
 * Lookups in operator-supplied rename tables (`event_mapping`, `property_mapping`).
 * Own keys only: a plain `table[name] ?? name` would turn an event or property called
 * "constructor" or "toString" into a function inherited from Object.prototype.
 */
export function renamed(name: string, table: Readonly<Record<string, string>>): string {
  return Object.hasOwn(table, name) ? (table[name] ?? name) : name;
}

/** Sets a key as an own data property, so "__proto__" from parsed JSON stays a plain key. */
export function setOwn(target: Record<string, unknown>, key: string, value: unknown): void {
  Object.defineProperty(target, key, { value, enumerable: true, writable: true, configurable: true });
}
