import { RELAY_EXTENSION_LABELS, type RelayExtensionEventType } from "./braze-extension-labels.js";

/**
 * Braze event_type → Mixpanel event label, as Braze's own Mixpanel connector names them
 * (docs/vendors/braze-currents.md §7, copied from reference/braze-mixpanel-labels.json).
 * "confirmed": read in the Mixpanel tab of Braze's event glossary; "inferred": built from the
 * "<Channel> <Action>" pattern with no glossary entry. `{name}` is the custom event name.
 * test/unit/sources/braze-labels.test.ts checks this table against a copy of the JSON.
 */
export type LabelEvidence = "confirmed" | "inferred";

export const BRAZE_EVENT_LABELS = {
  "users.behaviors.CustomEvent": { label: "[Braze Custom Event] {name}", evidence: "confirmed" },
  "users.behaviors.InstallAttribution": { label: "Install Attribution", evidence: "confirmed" },
  "users.behaviors.Location": { label: "Location", evidence: "confirmed" },
  "users.behaviors.Purchase": { label: "Purchase", evidence: "confirmed" },
  "users.behaviors.Uninstall": { label: "Uninstall", evidence: "confirmed" },
  "users.behaviors.app.FirstSession": { label: "First Session", evidence: "confirmed" },
  "users.behaviors.app.SessionEnd": { label: "Session End", evidence: "confirmed" },
  "users.behaviors.app.SessionStart": { label: "Session Start", evidence: "confirmed" },
  "users.behaviors.subscription.GlobalStateChange": { label: "Global Subscription State Change", evidence: "confirmed" },
  "users.behaviors.subscriptiongroup.StateChange": { label: "Subscription Group State Change", evidence: "confirmed" },
  "users.campaigns.Abort": { label: "Campaign Abort", evidence: "inferred" },
  "users.campaigns.Conversion": { label: "Campaign Conversion", evidence: "confirmed" },
  "users.campaigns.EnrollInControl": { label: "Campaign Control Group Enrollment", evidence: "confirmed" },
  "users.canvas.Abort": { label: "Canvas Abort", evidence: "inferred" },
  "users.canvas.Conversion": { label: "Canvas Conversion", evidence: "confirmed" },
  "users.canvas.Entry": { label: "Canvas Entry", evidence: "confirmed" },
  "users.canvas.exit.MatchedAudience": { label: "Exit Match Audience", evidence: "confirmed" },
  "users.canvas.exit.PerformedEvent": { label: "Exit Perform Event", evidence: "confirmed" },
  "users.canvas.experimentstep.Conversion": { label: "Experiment Step Conversion", evidence: "confirmed" },
  "users.canvas.experimentstep.SplitEntry": { label: "Experiment Split Entry", evidence: "confirmed" },
  "users.messages.contentcard.Abort": { label: "Content Card Abort", evidence: "confirmed" },
  "users.messages.contentcard.Click": { label: "Content Card Click", evidence: "confirmed" },
  "users.messages.contentcard.Dismiss": { label: "Content Card Dismiss", evidence: "confirmed" },
  "users.messages.contentcard.Impression": { label: "Content Card Impression", evidence: "confirmed" },
  "users.messages.contentcard.Send": { label: "Content Card Send", evidence: "confirmed" },
  "users.messages.email.Abort": { label: "Email Abort", evidence: "confirmed" },
  "users.messages.email.Bounce": { label: "Email Bounce", evidence: "confirmed" },
  "users.messages.email.Click": { label: "Email Click", evidence: "confirmed" },
  "users.messages.email.Delivery": { label: "Email Delivery", evidence: "confirmed" },
  "users.messages.email.MarkAsSpam": { label: "Email Mark As Spam", evidence: "confirmed" },
  "users.messages.email.Open": { label: "Email Open", evidence: "confirmed" },
  "users.messages.email.Send": { label: "Email Send", evidence: "confirmed" },
  "users.messages.email.SoftBounce": { label: "Email Soft Bounce", evidence: "confirmed" },
  "users.messages.email.Unsubscribe": { label: "Email Unsubscribe", evidence: "confirmed" },
  "users.messages.inappmessage.Abort": { label: "In-App Message Abort", evidence: "confirmed" },
  "users.messages.inappmessage.Click": { label: "In-App Message Click", evidence: "confirmed" },
  "users.messages.inappmessage.Impression": { label: "In-App Message Impression", evidence: "confirmed" },
  "users.messages.pushnotification.Abort": { label: "Push Notification Abort", evidence: "confirmed" },
  "users.messages.pushnotification.Bounce": { label: "Push Notification Bounce", evidence: "confirmed" },
  "users.messages.pushnotification.IosForeground": { label: "Push Notification iOS Foreground Open", evidence: "confirmed" },
  "users.messages.pushnotification.Open": { label: "Push Notification Open", evidence: "confirmed" },
  "users.messages.pushnotification.Send": { label: "Push Notification Send", evidence: "confirmed" },
  "users.messages.sms.Abort": { label: "SMS Abort", evidence: "confirmed" },
  "users.messages.sms.CarrierSend": { label: "SMS Carrier Send", evidence: "confirmed" },
  "users.messages.sms.Delivery": { label: "SMS Delivery", evidence: "confirmed" },
  "users.messages.sms.DeliveryFailure": { label: "SMS Delivery Failure", evidence: "confirmed" },
  "users.messages.sms.InboundReceive": { label: "SMS Inbound Received", evidence: "confirmed" },
  "users.messages.sms.Rejection": { label: "SMS Rejection", evidence: "confirmed" },
  "users.messages.sms.Send": { label: "SMS Send", evidence: "confirmed" },
  "users.messages.sms.ShortLinkClick": { label: "SMS Short Link Click", evidence: "confirmed" },
  "users.messages.webhook.Abort": { label: "Webhook Abort", evidence: "confirmed" },
  "users.messages.webhook.Send": { label: "Webhook Send", evidence: "confirmed" },
  "users.messages.whatsapp.Abort": { label: "WhatsApp Abort", evidence: "confirmed" },
  "users.messages.whatsapp.Delivery": { label: "WhatsApp Delivery", evidence: "confirmed" },
  "users.messages.whatsapp.Failure": { label: "WhatsApp Failure", evidence: "confirmed" },
  "users.messages.whatsapp.InboundReceive": { label: "WhatsApp Inbound Received", evidence: "confirmed" },
  "users.messages.whatsapp.Read": { label: "WhatsApp Read", evidence: "confirmed" },
  "users.messages.whatsapp.Send": { label: "WhatsApp Send", evidence: "confirmed" },
} as const satisfies Record<string, { readonly label: string; readonly evidence: LabelEvidence }>;

/** A type Braze's connector exports (the table above). */
export type ConnectorEventType = keyof typeof BRAZE_EVENT_LABELS;
/** Every type the relay names: the connector's, plus the relay extension (lib/vocabulary/braze-extension-labels.ts). */
export type BrazeEventType = ConnectorEventType | RelayExtensionEventType;

export const BRAZE_EVENT_TYPES: readonly BrazeEventType[] = [...Object.keys(BRAZE_EVENT_LABELS), ...Object.keys(RELAY_EXTENSION_LABELS)].filter(isBrazeEventType);

export const CUSTOM_EVENT_TYPE = "users.behaviors.CustomEvent" satisfies BrazeEventType;
export const PURCHASE_EVENT_TYPE = "users.behaviors.Purchase" satisfies BrazeEventType;

/**
 * Braze's Mixpanel page lists the legacy abort events with underscores; the legacy
 * Avro schemas used the dotted names (docs/vendors/braze-currents.md §7). Both spellings
 * are accepted and normalised to the dotted form.
 */
export const LEGACY_BRAZE_EVENT_TYPES: Readonly<Record<string, BrazeEventType>> = {
  users_campaigns_abort: "users.campaigns.Abort",
  users_canvas_abort: "users.canvas.Abort",
};

export function isConnectorEventType(value: string): value is ConnectorEventType {
  return Object.hasOwn(BRAZE_EVENT_LABELS, value);
}

export function isBrazeEventType(value: string): value is BrazeEventType {
  return isConnectorEventType(value) || Object.hasOwn(RELAY_EXTENSION_LABELS, value);
}

/** The dotted event type for a known (or legacy-spelled) name; undefined for an unknown one. */
export function normalizeBrazeEventType(raw: string): BrazeEventType | undefined {
  if (isBrazeEventType(raw)) return raw;
  return Object.hasOwn(LEGACY_BRAZE_EVENT_TYPES, raw) ? LEGACY_BRAZE_EVENT_TYPES[raw] : undefined;
}

/** The Mixpanel event name for a known event type; `customEventName` fills `{name}`. */
export function brazeEventLabel(eventType: BrazeEventType, customEventName: string): string {
  if (!isConnectorEventType(eventType)) return RELAY_EXTENSION_LABELS[eventType];
  return BRAZE_EVENT_LABELS[eventType].label.replace("{name}", () => customEventName); // a function: "$&" in a name stays literal
}
