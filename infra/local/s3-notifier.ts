import { ListObjectsV2Command, type S3Client } from "@aws-sdk/client-s3";
import type { S3Event } from "aws-lambda";

/**
 * Plays the part of S3 event notifications for the local stack: polls a bucket
 * and invokes the handler with an `ObjectCreated:Put` S3Event for every new key,
 * as AWS would for the Braze Currents bucket and the `on_upload` lookup tables' sources.
 */
export class S3Notifier {
  private readonly seen = new Set<string>();
  private timer: NodeJS.Timeout | undefined;
  private busy = false;

  constructor(
    private readonly options: {
      s3: S3Client;
      bucket: string;
      region: string;
      handler: (event: S3Event) => Promise<void>;
      intervalMs: number;
      /** The notification's configuration id, as the S3 event names it (default the Currents one). */
      configurationId?: string;
      onError?: (error: unknown) => void;
    },
  ) {}

  start(): void {
    this.timer = setInterval(() => void this.scanOnce().catch((error: unknown) => this.options.onError?.(error)), this.options.intervalMs);
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
  }

  /** How many keys it remembers as already notified. */
  get rememberedKeys(): number {
    return this.seen.size;
  }

  /** Notifies every object not seen before; answers how many it notified. */
  async scanOnce(): Promise<number> {
    if (this.busy) return 0;
    this.busy = true;
    try {
      const listed = await this.options.s3.send(new ListObjectsV2Command({ Bucket: this.options.bucket }));
      if (!listed.IsTruncated) {
        // Forget keys that are gone (deleted by the local stack's retention), so the set stays bounded.
        const present = new Set((listed.Contents ?? []).map((object) => object.Key));
        for (const key of this.seen) if (!present.has(key)) this.seen.delete(key);
      }
      const fresh = (listed.Contents ?? []).filter((object) => object.Key && !this.seen.has(object.Key));
      for (const object of fresh) {
        const key = object.Key ?? "";
        this.seen.add(key);
        await this.options.handler(
          s3ObjectCreatedEvent({
            bucket: this.options.bucket,
            key,
            region: this.options.region,
            size: object.Size ?? 0,
            eTag: (object.ETag ?? "").replace(/"/g, ""),
            ...(this.options.configurationId ? { configurationId: this.options.configurationId } : {}),
          }),
        );
      }
      return fresh.length;
    } finally {
      this.busy = false;
    }
  }
}

/** The S3 `ObjectCreated:Put` notification Lambda receives for one object. */
export function s3ObjectCreatedEvent(object: { bucket: string; key: string; region: string; size: number; eTag: string; configurationId?: string }): S3Event {
  return {
    Records: [
      {
        eventVersion: "2.1",
        eventSource: "aws:s3",
        awsRegion: object.region,
        eventTime: new Date().toISOString(),
        eventName: "ObjectCreated:Put",
        userIdentity: { principalId: "local" },
        requestParameters: { sourceIPAddress: "127.0.0.1" },
        responseElements: { "x-amz-request-id": "local", "x-amz-id-2": "local" },
        s3: {
          s3SchemaVersion: "1.0",
          configurationId: object.configurationId ?? "local-currents",
          bucket: { name: object.bucket, ownerIdentity: { principalId: "local" }, arn: `arn:aws:s3:::${object.bucket}` },
          // S3 notifications URL-encode keys (spaces as '+'); the reader decodes them.
          object: {
            key: encodeURIComponent(object.key).replace(/%2F/g, "/").replace(/%20/g, "+"),
            size: object.size,
            eTag: object.eTag,
            sequencer: "0",
          },
        },
      },
    ],
  };
}
