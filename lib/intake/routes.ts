import { mapNativeEvents } from "../sources/native.js";
import type { MapContext, MappedItem } from "../sources/types.js";

/**
 * The intake's routes: each turns a parsed JSON body into per-item results.
 * A route throws ValidationError only when the body as a whole is unusable (400);
 * per-item problems come back as RejectedItem so the rest of the batch is queued.
 */
export interface IntakeRequest {
  /** Lower-cased header names. */
  readonly headers: Readonly<Record<string, string | undefined>>;
  readonly query: Readonly<Record<string, string | undefined>>;
}

export interface IntakeRoute {
  readonly path: string;
  /** Name recorded on the envelope and in the rejected store. */
  readonly source: string;
  /** Whether an empty body is a valid no-op (Braze sends empty batches to check auth). */
  readonly allowEmptyBody?: boolean;
  map(body: unknown, ctx: MapContext, request: IntakeRequest): MappedItem[];
}

export const intakeRoutes: readonly IntakeRoute[] = [
  { path: "/v1/events", source: "native", map: (body, ctx) => mapNativeEvents(body, ctx) },
];

export function findRoute(path: string): IntakeRoute | undefined {
  return intakeRoutes.find((route) => route.path === path);
}
