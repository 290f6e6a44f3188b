import { afterEach, describe, expect, it } from "vitest";
import { SecretsManagerServer } from "../../../infra/local/peers/secrets-manager-server.js";

/** The local Secrets Manager against AWS's JSON 1.1 GetSecretValue contract, spoken to with plain fetch. */
let server: SecretsManagerServer | undefined;
afterEach(async () => {
  await server?.stop();
  server = undefined;
});

const call = (url: string, body: string, headers: Record<string, string> = {}) =>
  fetch(url, {
    method: "POST",
    headers: {
      "content-type": "application/x-amz-json-1.1",
      "x-amz-target": "secretsmanager.GetSecretValue",
      authorization: "AWS4-HMAC-SHA256 Credential=local/20261101/us-east-1/secretsmanager/aws4_request, SignedHeaders=host, Signature=00",
      ...headers,
    },
    body,
  });

describe("local Secrets Manager", () => {
  it("answers GetSecretValue with SecretString, and AWS-shaped errors otherwise", async () => {
    server = new SecretsManagerServer();
    const url = await server.start();
    server.setSecret("relay/braze", { api_key: "k" });
    const ok = await call(url, JSON.stringify({ SecretId: "relay/braze" }));
    expect(ok.status).toBe(200);
    expect(await ok.json()).toMatchObject({ Name: "relay/braze", SecretString: '{"api_key":"k"}' });
    const missing = await call(url, JSON.stringify({ SecretId: "nope" }));
    expect([missing.status, missing.headers.get("x-amzn-errortype")]).toEqual([400, "ResourceNotFoundException"]);
    expect((await call(url, "{", {})).headers.get("x-amzn-errortype")).toBe("SerializationException");
    expect((await call(url, "{}", { authorization: "" })).headers.get("x-amzn-errortype")).toBe("MissingAuthenticationTokenException");
    expect((await call(url, "{}", { "x-amz-target": "secretsmanager.PutSecretValue" })).headers.get("x-amzn-errortype")).toBe("UnknownOperationException");
    server.throttleNext = 1;
    expect((await call(url, JSON.stringify({ SecretId: "relay/braze" }))).headers.get("x-amzn-errortype")).toBe("ThrottlingException");
    expect(server.calls).toEqual(["relay/braze", "nope", "relay/braze"]);
  });
});
