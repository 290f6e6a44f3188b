import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import * as z from "zod";
import { RELAY_EXTENSION_LABELS } from "../../../lib/vocabulary/braze-extension-labels.js";
import {
  BRAZE_EVENT_LABELS,
  BRAZE_EVENT_TYPES,
  brazeEventLabel,
  isConnectorEventType,
  normalizeBrazeEventType,
} from "../../../lib/vocabulary/braze-labels.js";
import { FIXTURES_DIR, readJson } from "./support.js";

describe("Braze label table module", () => {
  it("is exactly the vendor reference table (test copy of braze-mixpanel-labels.json)", () => {
    expect(BRAZE_EVENT_LABELS).toEqual(readJson(`${FIXTURES_DIR}braze-mixpanel-labels.json`));
    expect(BRAZE_EVENT_TYPES).toHaveLength(Object.keys(BRAZE_EVENT_LABELS).length + Object.keys(RELAY_EXTENSION_LABELS).length);
  });

  it("names every event type in Braze's public Currents samples; the connector's with its own labels", () => {
    const samples = z.array(z.object({ event_type: z.string(), where: z.array(z.string()) })).parse(readJson(`${FIXTURES_DIR}sample-event-types.json`));
    expect(samples).toHaveLength(97);
    for (const { event_type, where } of samples) {
      const normalized = normalizeBrazeEventType(event_type);
      expect(normalized, event_type).toBe(event_type);
      expect(isConnectorEventType(event_type), event_type).toBe(where.includes("connector"));
    }
    expect(Object.keys(RELAY_EXTENSION_LABELS).sort()).toEqual(samples.filter((s) => !s.where.includes("connector")).map((s) => s.event_type).sort());
  });

  it("gives relay-extension types distinct labels in the connector's <Channel> <Action> style", () => {
    const connectorLabels = new Set<string>(Object.values(BRAZE_EVENT_LABELS).map((entry) => entry.label));
    const extension = Object.values(RELAY_EXTENSION_LABELS);
    expect(new Set(extension).size).toBe(extension.length);
    for (const label of extension) {
      expect(connectorLabels.has(label), label).toBe(false);
      expect(label).toMatch(/^[A-Z][A-Za-z-]*( [A-Z][A-Za-z-]*)+$/);
    }
    expect(brazeEventLabel("users.messages.line.InboundReceive", "ignored")).toBe("LINE Inbound Received");
  });

  it("is documented: docs/vendors/braze-currents-labels.md lists every type with its label and source", () => {
    const doc = readFileSync(new URL("../../../docs/vendors/braze-currents-labels.md", import.meta.url), "utf8");
    const rows = new Map([...doc.matchAll(/^\| `([^`]+)` \| `([^`]+)` \| ([^|]+) \|$/gm)].map((m) => [m[1], { label: m[2], source: m[3]?.trim() }]));
    expect(rows.size).toBe(BRAZE_EVENT_TYPES.length);
    for (const type of BRAZE_EVENT_TYPES) {
      const row = rows.get(type);
      expect(row?.label, type).toBe(brazeEventLabel(type, "{name}"));
      expect(row?.source, type).toMatch(isConnectorEventType(type) ? /^Braze connector/ : /^relay extension$/);
    }
  });

  it("normalises legacy underscore abort names and leaves unknown names unknown", () => {
    expect(normalizeBrazeEventType("users_campaigns_abort")).toBe("users.campaigns.Abort");
    expect(normalizeBrazeEventType("users_canvas_abort")).toBe("users.canvas.Abort");
    expect(normalizeBrazeEventType("users.messages.email.Send")).toBe("users.messages.email.Send");
    expect(normalizeBrazeEventType("users.messages.email.send")).toBeUndefined();
    expect(normalizeBrazeEventType("toString")).toBeUndefined();
    expect(normalizeBrazeEventType("__proto__")).toBeUndefined();
  });

  it("fills {name} only for the custom event label", () => {
    expect(brazeEventLabel("users.behaviors.CustomEvent", "Added To Cart")).toBe("[Braze Custom Event] Added To Cart");
    expect(brazeEventLabel("users.messages.email.Send", "ignored")).toBe("Email Send");
  });
});
