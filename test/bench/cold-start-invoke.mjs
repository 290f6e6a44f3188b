// One cold start, in a fresh Node process: import a function's bundle and invoke its handler once
// with an event that makes the function's first AWS call (against the fauxqs server the bench
// started); prints `IMPORT <ms>`, `COLD <ms>` (import + the invocation) and `CPU <ms>` (the
// process's CPU time over the same span, which a loaded machine disturbs less than wall time). Plain JavaScript so
// nothing but Node and the bundle is loaded before the clock starts.
const [bundle, name] = process.argv.slice(2);
const cpuAtStart = process.cpuUsage();
const started = performance.now();
const { handler } = await import(bundle);
const imported = performance.now();

const context = {
  awsRequestId: "cold-start",
  functionName: name,
  getRemainingTimeInMillis: () => 60_000,
};
const sqsEvent = (body) => ({
  Records: [
    {
      messageId: "m-1",
      receiptHandle: "r-1",
      body,
      attributes: { ApproximateReceiveCount: "1", SentTimestamp: String(Date.now()), SenderId: "x", ApproximateFirstReceiveTimestamp: String(Date.now()) },
      messageAttributes: {},
      md5OfBody: "",
      eventSource: "aws:sqs",
      eventSourceARN: `arn:aws:sqs:us-east-1:000000000000:${name}`,
      awsRegion: "us-east-1",
    },
  ],
});
const events = {
  // SendMessageBatch of one accepted event (to the events queue and, with Brevo sync on, the Brevo queue).
  intake: {
    version: "2.0",
    routeKey: "$default",
    rawPath: "/v1/events",
    rawQueryString: "",
    headers: { authorization: `Bearer ${process.env.INTAKE_TOKEN}`, "content-type": "application/json" },
    requestContext: { http: { method: "POST", path: "/v1/events", sourceIp: "127.0.0.1" }, requestId: "cold-start" },
    body: JSON.stringify([{ event: "Signed Up", properties: { distinct_id: "user-1", time: Math.floor(Date.now() / 1000) } }]),
    isBase64Encoded: false,
  },
  // An unreadable message: the rejected store's PutObject.
  forwarder: sqsEvent("not an envelope"),
  "brevo-forwarder": sqsEvent("not an envelope"),
  // A message that is not a page: refused, left to SQS (no AWS call).
  "webhook-delivery": sqsEvent("not a page"),
  // A Currents file notification: GetObject.
  "currents-reader": {
    Records: [
      {
        eventSource: "aws:s3",
        eventName: "ObjectCreated:Put",
        awsRegion: "us-east-1",
        s3: { bucket: { name: process.env.CURRENTS_BUCKET }, object: { key: "cold-start/missing.avro", size: 10 } },
      },
    ],
  },
  // A tick of a stage without cohort syncs (the bench gives it such a config): reads no cohort.
  "cohort-export": {},
};
const answer = await handler(events[name], context);
const done = performance.now();
const cpu = process.cpuUsage(cpuAtStart);
if (name === "intake" && answer?.statusCode !== 202) throw new Error(`intake answered ${answer?.statusCode}: ${answer?.body}`);
process.stdout.write(`\nIMPORT ${imported - started}\nCOLD ${done - started}\nCPU ${(cpu.user + cpu.system) / 1000}\nANSWER ${String(JSON.stringify(answer)).slice(0, 300)}\n`);
