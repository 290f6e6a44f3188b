/**
 * Prefixes Braze's own Mixpanel connector puts before custom-event and purchase properties
 * (docs/vendors/braze-currents.md §6). Their own module, so code that only needs the names
 * (the PII rules' aliases, lib/pii/source.ts) does not load the Braze Currents mapper and its
 * schemas into functions that never see a Braze event (cohort-export, webhook-delivery).
 */
export const CUSTOM_EVENT_PROPERTY_PREFIX = "[Custom event property] ";
export const PURCHASE_PROPERTY_PREFIX = "[Purchase property] ";

/** Every prefix the relay puts before a sender's property names: a PII rule on a name covers it under each (lib/pii/policy.ts). */
export const SOURCE_PROPERTY_PREFIXES: readonly string[] = [CUSTOM_EVENT_PROPERTY_PREFIX, PURCHASE_PROPERTY_PREFIX];
