import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { gdprOperatorEnv, mixpanelOperatorEnv } from "../../infra/cli-args.js";
import { LOCAL_BREVO_API_KEY, LOCAL_GDPR_TOKEN, LOCAL_MIXPANEL_CREDENTIALS } from "../../infra/local/stack.js";
import { writeLocalStackFile } from "../../infra/local/stack-file.js";

/** Where the Mixpanel commands (lookup tables, Brevo backfill) read their URL and service account. */
let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "relay-operator-env-"));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

describe("mixpanelOperatorEnv", () => {
  it("uses the running npm start's sandbox and its service account for --stage local", () => {
    const file = join(dir, "stack.json");
    writeLocalStackFile(file, { stage: "local", region: "us-east-1", awsEndpoint: "http://127.0.0.1:1", intakeUrl: "http://127.0.0.1:2", mixpanelUrl: "http://127.0.0.1:3", pid: process.pid });
    const { env, localMixpanelUrl } = mixpanelOperatorEnv({ stage: "local", region: "us-east-1", local: true }, { RELAY_LOCAL_STACK_FILE: file });
    expect(localMixpanelUrl).toBe("http://127.0.0.1:3");
    expect(env).toMatchObject({ MIXPANEL_API_URL: "http://127.0.0.1:3", MIXPANEL_PROJECT_ID: "424242", MIXPANEL_SERVICE_ACCOUNT_USERNAME: "relay-local.sa", RELAY_STAGE: "local" });
    expect(env.MIXPANEL_SECRET_ID).toBeUndefined();
    // The caller's own settings win over the sandbox's.
    expect(mixpanelOperatorEnv({ stage: "local", region: "us-east-1", local: true }, { RELAY_LOCAL_STACK_FILE: file, MIXPANEL_PROJECT_ID: "9" }).env.MIXPANEL_PROJECT_ID).toBe("9");
  });

  it("reads the stage's secret elsewhere, unless the caller names a project", () => {
    const { env, localMixpanelUrl } = mixpanelOperatorEnv({ stage: "prod", region: "eu-west-1" }, {});
    expect(localMixpanelUrl).toBeUndefined();
    expect(env).toMatchObject({ MIXPANEL_SECRET_ID: "mixpanel-relay/prod/mixpanel", AWS_REGION: "eu-west-1", RELAY_STAGE: "prod" });
    expect(mixpanelOperatorEnv({ stage: "prod", region: "eu-west-1" }, { MIXPANEL_PROJECT_ID: "1" }).env.MIXPANEL_SECRET_ID).toBeUndefined();
  });
});

describe("gdprOperatorEnv", () => {
  it("points gdpr:* at the running npm start's GDPR API and Brevo sandbox with their tokens for --stage local", () => {
    const file = join(dir, "stack.json");
    writeLocalStackFile(file, { stage: "local", region: "us-east-1", awsEndpoint: "http://127.0.0.1:1", intakeUrl: "http://127.0.0.1:2", mixpanelUrl: "http://127.0.0.1:3", brevoUrl: "http://127.0.0.1:4/v3", pid: process.pid });
    const env = gdprOperatorEnv({ stage: "local", region: "us-east-1", local: true }, { RELAY_LOCAL_STACK_FILE: file });
    expect(env).toMatchObject({
      MIXPANEL_GDPR_URL: "http://127.0.0.1:3/api/app",
      MIXPANEL_GDPR_TOKEN: LOCAL_GDPR_TOKEN,
      MIXPANEL_PROJECT_TOKEN: LOCAL_MIXPANEL_CREDENTIALS.projectToken,
      BREVO_API_URL: "http://127.0.0.1:4/v3",
      BREVO_API_KEY: LOCAL_BREVO_API_KEY,
    });
    expect(gdprOperatorEnv({ stage: "local", region: "us-east-1", local: true }, { RELAY_LOCAL_STACK_FILE: file, BREVO_API_KEY: "mine" }).BREVO_API_KEY).toBe("mine");
  });

  it("adds nothing for a deployed stage", () => {
    expect(gdprOperatorEnv({ stage: "prod", region: "eu-west-1" }, { A: "1" })).toEqual({ A: "1" });
  });
});
