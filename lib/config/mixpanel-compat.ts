import * as z from "../util/zod.js";

/**
 * Stage config key `mixpanel_compat`: serve Mixpanel's own ingestion endpoints
 * (`/track`, `/engage`, `/groups`, `/import`) so an official SDK's `api_host` / `host` /
 * `serverURL` can point at the relay (docs/vendors/mixpanel-wire.md §1). Absent = those
 * routes answer 404 like any unknown path.
 */
const origin = z.string().check(
  z.refine((value) => {
    try {
      const url = new URL(value);
      return (url.protocol === "https:" || url.protocol === "http:") && url.origin === value;
    } catch {
      return false;
    }
  }, 'must be an origin like "https://www.example.com" (scheme, host and port only, no path or trailing slash)'),
);

export const mixpanelCompatConfigSchema = z.strictObject({
  /**
   * Mounts the endpoints under a path, e.g. "/_mp/api" serves "/_mp/api/track" (Mixpanel's
   * documented proxy layout, docs/vendors/mixpanel-wire.md §6). "" = at the root.
   */
  path_prefix: z._default(
    z.string().check(z.regex(/^(\/[A-Za-z0-9._~-]+)*$/, 'must be "" or like "/_mp/api" (segments of letters, digits, . _ ~ -; no trailing slash)')),
    "",
  ),
  /**
   * Mixpanel project tokens accepted inside payloads (`properties.token`, `$token`): the
   * stage's project token plus any other app's that should land in the same project.
   * Project tokens are public (every web page ships one), so they live in config, not a secret.
   */
  project_tokens: z.array(z.string().check(z.trim(), z.minLength(1))).check(z.minLength(1)),
  /**
   * Browser origins allowed to send (CORS, echoed with credentials; docs/vendors/mixpanel-wire.md §4.3).
   * A request whose Origin is not listed is refused with 403 and not queued. [] = no browsers.
   */
  cors_origins: z._default(z.array(origin), []),
  /**
   * When an SDK asks for `ip=1`, copy the client's source IP into `ip` / `$ip` so Mixpanel
   * geolocates the user instead of the relay (docs/vendors/mixpanel-wire.md §6). false = never
   * forward client IPs (privacy); records then carry `ip: "0"` unless the payload set one.
   */
  client_ip: z._default(z.boolean(), true),
});

export type MixpanelCompatConfig = z.infer<typeof mixpanelCompatConfigSchema>;
