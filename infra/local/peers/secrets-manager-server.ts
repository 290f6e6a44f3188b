import { createServer, type Server } from "node:http";
import { closeServer, listenOnLoopback } from "./local-server.js";

/**
 * A strict local Secrets Manager (AWS JSON 1.1 protocol): only GetSecretValue,
 * SigV4-signed requests only, AWS-shaped errors. Counts calls so tests can
 * check the per-container cache.
 */
export class SecretsManagerServer {
  readonly calls: string[] = [];
  private readonly secrets = new Map<string, string>();
  private server: Server | undefined;
  /** Answer this many calls with a throttling error first. */
  throttleNext = 0;
  url = "";

  setSecret(name: string, value: unknown): void {
    this.secrets.set(name, typeof value === "string" ? value : JSON.stringify(value));
  }

  async start(): Promise<string> {
    this.server = createServer((request, response) => {
      const chunks: Buffer[] = [];
      request.on("data", (chunk: Buffer) => chunks.push(chunk));
      request.on("end", () => {
        const fail = (status: number, type: string, message: string) => {
          response.writeHead(status, { "content-type": "application/x-amz-json-1.1", "x-amzn-errortype": type });
          response.end(JSON.stringify({ __type: type, message }));
        };
        if (!String(request.headers.authorization ?? "").startsWith("AWS4-HMAC-SHA256")) {
          return fail(400, "MissingAuthenticationTokenException", "request is not signed");
        }
        if (request.headers["x-amz-target"] !== "secretsmanager.GetSecretValue") {
          return fail(400, "UnknownOperationException", `unsupported ${String(request.headers["x-amz-target"])}`);
        }
        let secretId = "";
        try {
          const parsed: unknown = JSON.parse(Buffer.concat(chunks).toString("utf8"));
          if (parsed && typeof parsed === "object" && "SecretId" in parsed && typeof parsed.SecretId === "string") {
            secretId = parsed.SecretId;
          }
        } catch {
          return fail(400, "SerializationException", "invalid JSON");
        }
        this.calls.push(secretId);
        if (this.throttleNext > 0) {
          this.throttleNext--;
          return fail(400, "ThrottlingException", "Rate exceeded");
        }
        const value = this.secrets.get(secretId);
        if (value === undefined) return fail(400, "ResourceNotFoundException", "Secrets Manager can't find the specified secret.");
        response.writeHead(200, { "content-type": "application/x-amz-json-1.1" });
        response.end(
          JSON.stringify({
            ARN: `arn:aws:secretsmanager:us-east-1:000000000000:secret:${secretId}-AbCdEf`,
            Name: secretId,
            SecretString: value,
            VersionId: "v1",
            VersionStages: ["AWSCURRENT"],
            CreatedDate: 1_700_000_000,
          }),
        );
      });
    });
    const port = await listenOnLoopback(this.server);
    this.url = `http://127.0.0.1:${port}`;
    return this.url;
  }

  async stop(): Promise<void> {
    await closeServer(this.server);
  }
}
