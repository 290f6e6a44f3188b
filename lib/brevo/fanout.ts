import { type RecordKind, packEnvelopes } from "../records/envelope.js";
import type { BrevoConfig } from "./config.js";

/**
 * The fan-out to Brevo (README "Brevo"): the records the intake (or the Currents reader) has
 * accepted for Mixpanel, exactly as they go on the events queue, are also put on the Brevo
 * queue when `brevo.sync` enables their kind, in the same versioned envelope. The Brevo
 * forwarder maps them (lib/brevo/events.ts, contacts.ts, companies.ts), so both destinations
 * see the same record, and each queue has its own consumer: an outage on one side never holds
 * the other back.
 *
 * A record too large for one SQS message was already refused for Mixpanel (the envelope
 * overhead is the same), so it is left out here without a second rejection.
 */
export function brevoKinds(config: BrevoConfig | undefined): Set<RecordKind> {
  const kinds = new Set<RecordKind>();
  if (!config) return kinds;
  if (config.sync.events) kinds.add("event");
  if (config.sync.profiles) kinds.add("profile");
  if (config.sync.groups) kinds.add("group");
  return kinds;
}

export function brevoQueueBodies(
  config: BrevoConfig | undefined,
  linesByKind: ReadonlyMap<RecordKind, readonly string[]>,
  source: string,
  correlationId: string,
  maxMessageBytes: number,
): string[] {
  const kinds = brevoKinds(config);
  const bodies: string[] = [];
  for (const [kind, lines] of linesByKind) {
    if (!kinds.has(kind) || lines.length === 0) continue;
    bodies.push(...packEnvelopes(kind, source, correlationId, lines, maxMessageBytes).bodies);
  }
  return bodies;
}
