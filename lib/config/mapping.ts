import { z } from "zod";

/**
 * Mapping keys of the stage config (issue #3 fills these in: event renames,
 * profile property renames, Braze allow-list, identity mode).
 */
export const mappingConfigSchema = z.object({
  /** Event renames applied to every source, e.g. {"Sign Up": "customer_created"}. */
  event_mapping: z.record(z.string().min(1), z.string().min(1)).default({}),
});
