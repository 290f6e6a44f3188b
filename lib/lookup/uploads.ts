import * as z from "../util/zod.js";
import type { UploadedObject } from "./refresh.js";

/**
 * The objects an S3 ObjectCreated notification names. S3 sends keys URL-encoded with
 * `+` for a space (https://docs.aws.amazon.com/AmazonS3/latest/userguide/notification-content-structure.html),
 * so they are decoded before they are compared with the configured keys.
 */
const s3EventSchema = z.object({
  Records: z.array(
    z.object({
      eventSource: z.literal("aws:s3"),
      eventName: z.string().check(z.startsWith("ObjectCreated:")),
      s3: z.object({ bucket: z.object({ name: z.string() }), object: z.object({ key: z.string() }) }),
    }),
  ),
});

const decodeKey = (key: string) => {
  try {
    return decodeURIComponent(key.replace(/\+/g, " "));
  } catch {
    return key;
  }
};

/** undefined when the event is not an S3 ObjectCreated notification (a schedule tick, a manual run). */
export function uploadedObjects(event: unknown): UploadedObject[] | undefined {
  const parsed = s3EventSchema.safeParse(event);
  if (!parsed.success) return undefined;
  return parsed.data.Records.map((record) => ({ bucket: record.s3.bucket.name, key: decodeKey(record.s3.object.key) }));
}
