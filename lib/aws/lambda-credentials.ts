import { fromEnv } from "@aws-sdk/credential-provider-env";
import { fromHttp } from "@aws-sdk/credential-provider-http";
import { chain, memoize } from "@smithy/core/config";

/**
 * The credential chain the function bundles carry in place of the SDK's default one
 * (`@aws-sdk/credential-provider-node`, replaced by an esbuild alias in infra/build.ts).
 *
 * Lambda hands a function its role's credentials in the environment (AWS_ACCESS_KEY_ID,
 * AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN) or, with SnapStart, through a container endpoint
 * (AWS_CONTAINER_CREDENTIALS_FULL_URI + AWS_CONTAINER_AUTHORIZATION_TOKEN)
 * (https://docs.aws.amazon.com/lambda/latest/dg/configuration-envvars.html#configuration-envvars-runtime,
 * https://docs.aws.amazon.com/lambda/latest/dg/snapstart-activate.html). The default chain also
 * carries SSO, shared-config files, credential processes, web identity and console login, with
 * the STS/SSO clients they call: about 90 KiB per function that a Lambda never runs. The operator
 * tools in infra/ run unbundled and keep the SDK's whole default chain (profiles, SSO).
 */
export const defaultProvider = (init: Parameters<typeof fromHttp>[0] = {}): ReturnType<typeof fromEnv> =>
  // fromHttp reads its endpoint when it is built (and throws without one): built only when the
  // environment has no keys. Kept until five minutes before they expire, as the SDK's default chain keeps them.
  memoize(chain(fromEnv(init), () => fromHttp(init)()), expiresWithinFiveMinutes, (credentials) => credentials.expiration !== undefined);

const expiresWithinFiveMinutes = (credentials: Awaited<ReturnType<ReturnType<typeof fromEnv>>>): boolean =>
  credentials.expiration !== undefined && credentials.expiration.getTime() - Date.now() < 300_000;
