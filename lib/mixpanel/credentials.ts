import * as z from "../util/zod.js";
import type { Env } from "../config/env.js";
import { ConfigError } from "../util/errors.js";
import type { SecretReader } from "../secrets/secrets.js";

/**
 * Mixpanel credentials: one Secrets Manager secret (JSON) in AWS, MIXPANEL_* env
 * vars in the local stack. A service account (Basic user:secret + project_id) is
 * preferred for /import and the Query API; the project token is the fallback for
 * /import and is always needed as `$token` on /engage and /groups
 * (docs/vendors/mixpanel-api.md §2).
 */
const nonEmpty = z.string().check(z.minLength(1));

export const mixpanelSecretSchema = z
  .object({
    project_id: z.optional(z.coerce.string().check(z.minLength(1))),
    project_token: z.optional(nonEmpty),
    service_account_username: z.optional(nonEmpty),
    service_account_secret: z.optional(nonEmpty),
  })
  .check(
    z.refine(
      (value) =>
        value.project_token !== undefined ||
        (value.project_id !== undefined &&
          value.service_account_username !== undefined &&
          value.service_account_secret !== undefined),
      { message: "needs project_token, or project_id with service_account_username and service_account_secret" },
    ),
  );

export type MixpanelCredentials = z.infer<typeof mixpanelSecretSchema>;

export type CredentialsSource = () => Promise<MixpanelCredentials>;

export function mixpanelCredentialsSource(
  env: Pick<Env, "MIXPANEL_SECRET_ID" | "MIXPANEL_PROJECT_ID" | "MIXPANEL_PROJECT_TOKEN" | "MIXPANEL_SERVICE_ACCOUNT_USERNAME" | "MIXPANEL_SERVICE_ACCOUNT_SECRET">,
  secrets: SecretReader,
): CredentialsSource {
  const secretId = env.MIXPANEL_SECRET_ID;
  if (secretId) return () => secrets.getJson(secretId, mixpanelSecretSchema);
  const parsed = mixpanelSecretSchema.safeParse({
    project_id: env.MIXPANEL_PROJECT_ID,
    project_token: env.MIXPANEL_PROJECT_TOKEN,
    service_account_username: env.MIXPANEL_SERVICE_ACCOUNT_USERNAME,
    service_account_secret: env.MIXPANEL_SERVICE_ACCOUNT_SECRET,
  });
  return async () => {
    if (!parsed.success) {
      throw new ConfigError(
        "Mixpanel credentials missing: set MIXPANEL_SECRET_ID, or MIXPANEL_PROJECT_TOKEN / MIXPANEL_PROJECT_ID + MIXPANEL_SERVICE_ACCOUNT_USERNAME + MIXPANEL_SERVICE_ACCOUNT_SECRET",
      );
    }
    return parsed.data;
  };
}

export interface AuthorizedTarget {
  readonly authorization: string;
  /** Query parameters to add (`project_id` only with a service account). */
  readonly query: Record<string, string>;
}

const basic = (user: string, password: string) => `Basic ${Buffer.from(`${user}:${password}`).toString("base64")}`;

export function authorizationFor(credentials: MixpanelCredentials): AuthorizedTarget {
  const { service_account_username: user, service_account_secret: secret, project_id: projectId } = credentials;
  if (user && secret && projectId) return { authorization: basic(user, secret), query: { project_id: projectId } };
  if (credentials.project_token) return { authorization: basic(credentials.project_token, ""), query: {} };
  throw new ConfigError("no usable Mixpanel credentials");
}
