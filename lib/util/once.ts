/**
 * Builds a value once and remembers it; if building throws (bad config), the
 * error is rethrown on every call so each request fails loudly instead of the
 * container dying at init with an opaque 500.
 */
export function once<T>(build: () => T): () => T {
  let state: { ok: true; value: T } | { ok: false; error: unknown } | undefined;
  return () => {
    if (!state) {
      try {
        state = { ok: true, value: build() };
      } catch (error) {
        state = { ok: false, error };
      }
    }
    if (state.ok) return state.value;
    throw state.error;
  };
}
