import { SecretsProvider } from "@aws-lambda-powertools/parameters/secrets";
import { SecretsManagerClient } from "@aws-sdk/client-secrets-manager";
import { NodeHttpHandler } from "@smithy/node-http-handler";
import { type AwsTarget, SMALL_CALL_TIMEOUT_MS, clientConfig, httpHandlerOptions } from "../aws/aws-call.js";

/**
 * Powertools' SecretsProvider over the SDK's SecretsManagerClient with the relay's timeouts.
 * Three attempts (the intake's count): a secret is read at a cold start and then once per TTL,
 * and a function that cannot read it fails the invocation, which its trigger retries.
 * Loaded by secrets.ts at the first secret read.
 */
export function createSecretsProvider(target: AwsTarget): SecretsProvider {
  return new SecretsProvider({
    awsSdkV3Client: new SecretsManagerClient({
      ...clientConfig(target, "intake"),
      requestHandler: new NodeHttpHandler(httpHandlerOptions(SMALL_CALL_TIMEOUT_MS)),
    }),
  });
}
