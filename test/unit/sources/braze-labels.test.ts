import { describe, expect, it } from "vitest";
import {
  BRAZE_EVENT_LABELS,
  BRAZE_EVENT_TYPES,
  brazeEventLabel,
  normalizeBrazeEventType,
} from "../../../lib/sources/braze-labels.js";
import { FIXTURES_DIR, readJson } from "./support.js";

describe("Braze label table module", () => {
  it("is exactly the vendor reference table (test copy of braze-mixpanel-labels.json)", () => {
    expect(BRAZE_EVENT_LABELS).toEqual(readJson(`${FIXTURES_DIR}braze-mixpanel-labels.json`));
    expect(BRAZE_EVENT_TYPES).toHaveLength(Object.keys(BRAZE_EVENT_LABELS).length);
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
