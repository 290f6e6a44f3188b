import { type CronSchedule, parseCron } from "../config/query-syncs.js";
import { ONCE, rateToMs } from "../config/cohort-syncs.js";
import type { QuerySync } from "../config/query-syncs.js";
import type { QueryState } from "./store.js";

/**
 * When a query sync is due (pure). The cohort-export tick decides, as for cohort syncs:
 *
 * - `once`: the first tick, then only when forced;
 * - `rate(…)`: once the interval has passed since the last start, minus half a tick (the
 *   cohort syncs' rule, lib/cohorts/schedule.ts), so `rate(1 hour)` under a 15-minute tick
 *   runs every hour, not every 75 minutes;
 * - `cron(…)` (UTC): when a minute the expression names has come since the last start (a
 *   sync never started looks back one tick). The look-back is at most CRON_LOOKBACK_MS, which
 *   bounds the scan; a schedule that names no minute in that window runs at its next minute.
 */
export const CRON_LOOKBACK_MS = 35 * 86_400_000;
const MINUTE = 60_000;

function matches(cron: CronSchedule, ms: number): boolean {
  const at = new Date(ms);
  if (!cron.minutes.has(at.getUTCMinutes()) || !cron.hours.has(at.getUTCHours()) || !cron.months.has(at.getUTCMonth() + 1)) return false;
  if (cron.years !== "any" && !cron.years.has(at.getUTCFullYear())) return false;
  if (cron.daysOfMonth !== "any" && !cron.daysOfMonth.has(at.getUTCDate())) return false;
  if (cron.daysOfWeek !== "any" && !cron.daysOfWeek.has(at.getUTCDay() + 1)) return false;
  return true;
}

/** Whether `cron` names a minute in (afterMs, untilMs]. */
export function cronFiresBetween(cron: CronSchedule, afterMs: number, untilMs: number): boolean {
  const from = Math.max(afterMs, untilMs - CRON_LOOKBACK_MS);
  let minute = Math.floor(from / MINUTE) * MINUTE + MINUTE;
  for (; minute <= untilMs; minute += MINUTE) if (matches(cron, minute)) return true;
  return false;
}

export function isQueryDue(sync: Pick<QuerySync, "schedule">, state: QueryState, tickStartMs: number, tickMs: number): boolean {
  const last = state.last_started_at === undefined ? undefined : Date.parse(state.last_started_at);
  const cron = parseCron(sync.schedule);
  if (cron) return cronFiresBetween(cron, last ?? tickStartMs - tickMs, tickStartMs);
  if (last === undefined) return true;
  if (sync.schedule === ONCE) return false;
  const interval = rateToMs(sync.schedule) ?? 86_400_000;
  return tickStartMs - last >= interval - tickMs / 2;
}
