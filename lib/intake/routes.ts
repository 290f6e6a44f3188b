import { count, logger } from "../observability/telemetry.js";
import { mapAdobeBatch } from "../sources/adobe.js";
import { isKnownCurrentsVersion, mapBrazeCurrentsBatch } from "../sources/braze-currents.js";
import { mapGroupUpdates } from "../sources/groups.js";
import { mapNativeEvents } from "../sources/native.js";
import { mapProfileUpdates } from "../sources/profiles.js";
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
  {
    path: "/v1/braze/currents",
    source: "braze",
    allowEmptyBody: true,
    map: (body, ctx, request) => {
      const version = request.headers["braze-currents-version"];
      if (!isKnownCurrentsVersion(version)) {
        // Logged, not refused (see isKnownCurrentsVersion): refusing would lose data after Braze's retries.
        logger.warn("unknown Braze-Currents-Version; mapping the batch anyway", { version });
        count("BrazeCurrentsUnknownVersion", 1);
      }
      return mapBrazeCurrentsBatch(body, ctx);
    },
  },
  { path: "/v1/adobe/events", source: "adobe", map: (body, ctx) => mapAdobeBatch(body, ctx) },
  { path: "/v1/profiles", source: "profiles", map: (body, ctx) => mapProfileUpdates(body, ctx) },
  { path: "/v1/groups", source: "groups", map: (body, ctx) => mapGroupUpdates(body, ctx) },
];

export function findRoute(path: string): IntakeRoute | undefined {
  return intakeRoutes.find((route) => route.path === path);
}
