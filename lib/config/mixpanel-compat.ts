import * as z from "zod";

/**
 * Stage config key `mixpanel_compat` (issue #11): serve Mixpanel's own ingestion endpoints
 * (`/track`, `/engage`, `/groups`, `/import`) so an official SDK's `api_host` / `host` /
 * `serverURL` can point at the relay (docs/vendors/mixpanel-wire.md §1). Absent = those
 * routes answer 404 like any unknown path.
 */
const origin = z
  .string()
  .refine((value) => {
    try {
      const url = new URL(value);
      return (url.protocol === "https:" || url.protocol === "http:") && url.origin === value;
    } catch {
      return false;
    }
  }, 'must be an origin like "https://www.example.com" (scheme, host and port only, no path or trailing slash)');

export const mixpanelCompatConfigSchema = z
  .object({
    /**
     * Mounts the endpoints under a path, e.g. "/_mp/api" serves "/_mp/api/track" (Mixpanel's
     * documented proxy layout, docs/vendors/mixpanel-wire.md §6). "" = at the root.
     */
    path_prefix: z
      .string()
      .regex(/^(\/[A-Za-z0-9._~-]+)*$/, 'must be "" or like "/_mp/api" (segments of letters, digits, . _ ~ -; no trailing slash)')
      .default(""),
    /**
     * Mixpanel project tokens accepted inside payloads (`properties.token`, `$token`): the
     * stage's project token plus any other app's that should land in the same project.
     * Project tokens are public (every web page ships one), so they live in config, not a secret.
     */
    project_tokens: z.array(z.string().trim().min(1)).min(1),
    /**
     * Browser origins allowed to send (CORS, echoed with credentials; docs/vendors/mixpanel-wire.md §4.3).
     * A request whose Origin is not listed is refused with 403 and not queued. [] = no browsers.
     */
    cors_origins: z.array(origin).default([]),
    /**
     * When an SDK asks for `ip=1`, copy the client's source IP into `ip` / `$ip` so Mixpanel
     * geolocates the user instead of the relay (docs/vendors/mixpanel-wire.md §6). false = never
     * forward client IPs (privacy); records then carry `ip: "0"` unless the payload set one.
     */
    client_ip: z.boolean().default(true),
  })
  .strict();

export type MixpanelCompatConfig = z.infer<typeof mixpanelCompatConfigSchema>;
