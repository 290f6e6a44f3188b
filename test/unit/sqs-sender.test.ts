import { describe, expect, it } from "vitest";
import type { SqsApi, SqsEntry } from "../../lib/aws/sqs.js";
import { RetryableError } from "../../lib/util/errors.js";
import { createQueueSender } from "../../lib/queue/sqs-sender.js";

function recordingSqs(answers: ((entries: readonly SqsEntry[]) => Promise<{ Id: string; Code: string; Message: string }[]>)[]): SqsApi & { calls: string[][] } {
  const calls: string[][] = [];
  return {
    calls,
    async sendMessage() {
      throw new Error("not used");
    },
    async sendMessageBatch(_queueUrl, entries) {
      calls.push(entries.map((entry) => entry.MessageBody));
      const answer = answers[calls.length - 1];
      if (!answer) throw new Error("unexpected call");
      return answer(entries);
    },
  };
}

describe("queue sender over the SDK client", () => {
  it("does not repeat a call that failed as a whole: the SDK client already spent its attempts", async () => {
    const sqs = recordingSqs([async () => Promise.reject(new Error("ServiceUnavailable")), async () => []]);
    await expect(createQueueSender(sqs, 262_144).send("q", ["a", "b"])).rejects.toBeInstanceOf(RetryableError);
    expect(sqs.calls).toEqual([["a", "b"]]);
  });

  it("sends again only the entries SQS refused inside a successful answer", async () => {
    const sqs = recordingSqs([async (entries) => [{ Id: entries[1]?.Id ?? "", Code: "InternalError", Message: "try again" }], async () => []]);
    await createQueueSender(sqs, 262_144).send("q", ["a", "b", "c"]);
    expect(sqs.calls).toEqual([["a", "b", "c"], ["b"]]);
  });
});
