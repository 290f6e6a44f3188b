import { type QueryBudget, type QueryClient, createQueryBudget } from "../mixpanel/query.js";
import type { ExportDeps } from "./tick.js";

/**
 * The Query API budget of one tick (docs/vendors/mixpanel-api.md §8: 60 queries
 * per hour and 5 concurrent, per project): the calls of the last rolling hour
 * are read from _budget.json, this tick may spend what is left up to
 * `queriesPerRun`, and every spent call is written back as soon as it is spent
 * (after the list call and every fetch round) and once more on the way out, so
 * an emit error or a Lambda timeout never makes the next tick believe the
 * hour's calls are still there.
 */
const HOUR_MS = 3_600_000;

export interface TickBudget {
  readonly budget: QueryBudget;
  readonly allowance: number;
  queryClient(): Promise<QueryClient>;
  persist(): Promise<void>;
  spent(): number;
}

export async function openTickBudget(deps: ExportDeps, startedAt: number): Promise<TickBudget> {
  const { store, limits } = deps;
  const recentCalls = (await store.readBudget()).filter((t) => startedAt - t < HOUR_MS);
  const allowance = Math.max(0, Math.min(limits.queriesPerRun, limits.queriesPerHour - recentCalls.length));
  const budget = createQueryBudget(allowance, limits.concurrency);
  let client: QueryClient | undefined;
  const spentAt: number[] = [];
  return {
    budget,
    allowance,
    queryClient: async () => (client ??= await deps.createQueryClient(budget)),
    spent: () => allowance - budget.remaining(),
    async persist() {
      const used = allowance - budget.remaining();
      if (used <= spentAt.length) return;
      const stamp = deps.now();
      while (spentAt.length < used) spentAt.push(stamp);
      await store.writeBudget([...recentCalls, ...spentAt]);
    },
  };
}
