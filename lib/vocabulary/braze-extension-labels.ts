/**
 * Mixpanel labels for the Braze Currents event types that Braze's own Mixpanel connector does
 * not export (docs/vendors/braze-currents.md §8): every other type in Braze's published Currents
 * samples. A Custom HTTP Current sends whatever types the customer ticked, so the relay names
 * these too, in the connector's "<Channel> <Action>" style (§7), including its "Inbound Received"
 * wording. They are the relay's own names, not Braze's: docs/vendors/braze-currents-labels.md
 * lists them as "relay extension".
 */
export const RELAY_EXTENSION_LABELS = {
  "agentconsole.AgentExecuted": "Agent Console Agent Executed",
  "agentconsole.ToolInvocation": "Agent Console Tool Invocation",
  "users.RandomBucketNumberUpdate": "Random Bucket Number Update",
  "users.UserDeleteRequest": "User Delete Request",
  "users.UserOrphan": "User Orphan",
  "users.behaviors.liveactivity.PushToStartTokenChange": "Live Activity Push To Start Token Change",
  "users.behaviors.liveactivity.UpdateTokenChange": "Live Activity Update Token Change",
  "users.behaviors.pushnotification.TokenStateChange": "Push Notification Token State Change",
  "users.canvas.costep.Send": "Canvas Co-Step Send",
  "users.canvasstep.Progression": "Canvas Step Progression",
  "users.messages.banner.Abort": "Banner Abort",
  "users.messages.banner.Click": "Banner Click",
  "users.messages.banner.Dismiss": "Banner Dismiss",
  "users.messages.banner.Impression": "Banner Impression",
  "users.messages.email.Deferral": "Email Deferral",
  "users.messages.email.Retry": "Email Retry",
  "users.messages.featureflag.Impression": "Feature Flag Impression",
  "users.messages.line.Abort": "LINE Abort",
  "users.messages.line.Click": "LINE Click",
  "users.messages.line.InboundReceive": "LINE Inbound Received",
  "users.messages.line.Retry": "LINE Retry",
  "users.messages.line.Send": "LINE Send",
  "users.messages.liveactivity.Outcome": "Live Activity Outcome",
  "users.messages.liveactivity.Send": "Live Activity Send",
  "users.messages.newsfeedcard.Abort": "News Feed Card Abort",
  "users.messages.newsfeedcard.Click": "News Feed Card Click",
  "users.messages.newsfeedcard.Impression": "News Feed Card Impression",
  "users.messages.pushnotification.Retry": "Push Notification Retry",
  "users.messages.rcs.Abort": "RCS Abort",
  "users.messages.rcs.Click": "RCS Click",
  "users.messages.rcs.Delivery": "RCS Delivery",
  "users.messages.rcs.InboundReceive": "RCS Inbound Received",
  "users.messages.rcs.Read": "RCS Read",
  "users.messages.rcs.Rejection": "RCS Rejection",
  "users.messages.rcs.Send": "RCS Send",
  "users.messages.sms.Retry": "SMS Retry",
  "users.messages.webhook.Failure": "Webhook Failure",
  "users.messages.webhook.Retry": "Webhook Retry",
  "users.messages.whatsapp.Click": "WhatsApp Click",
  "users.messages.whatsapp.Retry": "WhatsApp Retry",
  "users.profile.Update": "Profile Update",
} as const satisfies Record<string, string>;

export type RelayExtensionEventType = keyof typeof RELAY_EXTENSION_LABELS;
