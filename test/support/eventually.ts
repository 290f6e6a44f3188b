/**
 * Polls `check` every 100 ms until it returns something other than `undefined` or `false`,
 * and returns that; fails after `timeoutMs`. For tests that wait on a queue, a poller or a
 * local peer to catch up (every loop bounded in time).
 */
export async function eventually<T>(
  check: () => T | undefined | false | Promise<T | undefined | false>,
  timeoutMs = 25_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined && value !== false) return value;
    if (Date.now() > deadline) throw new Error(`condition not met within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}
