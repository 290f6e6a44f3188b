import { z } from "zod";

/** Cohort sync declarations of the stage config (issue #4 fills these in). */
export const cohortSyncsSchema = z.array(z.object({ id: z.string().min(1) }).strict());
