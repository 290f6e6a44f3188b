import { randomUUID } from "node:crypto";
import { requireSetting } from "../config/env.js";
import { createQueueSender } from "../queue/sqs-sender.js";
import { type LiteRuntimeContext, brevoQueueUrlFor, rejectedStoreFor } from "./lite-context.js";
import { piiPolicySource } from "../pii/source.js";
import { intakeTokenSource } from "../intake/auth.js";
import type { IntakeDeps } from "../intake/process.js";
import { erasedDigestsFor } from "./erased-ids.js";

/** Wires the intake's dependencies from the runtime context (once per container). */
export function intakeDepsFrom(runtime: LiteRuntimeContext): IntakeDeps {
  const { env } = runtime;
  return {
    config: runtime.config,
    tokens: intakeTokenSource(env, runtime.secrets),
    queue: createQueueSender(runtime.sqs, env.SQS_MAX_MESSAGE_BYTES),
    queueUrl: requireSetting(env, "EVENTS_QUEUE_URL"),
    brevoQueueUrl: brevoQueueUrlFor(runtime),
    rejected: rejectedStoreFor(runtime),
    maxMessageBytes: env.SQS_MAX_MESSAGE_BYTES,
    maxBodyBytes: env.INTAKE_MAX_BODY_BYTES,
    nowMs: Date.now,
    newCorrelationId: randomUUID,
    pii: piiPolicySource(runtime.config, env, runtime.secrets),
    ...erasedDigestsFor(runtime),
  };
}
