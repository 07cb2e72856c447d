// Waiting in tests: for a condition, with what was waited for in the failure.

/** Waits until `done()` holds (checked every 20 ms), failing after `ms` with what it waited for. */
export async function until(what: string, done: () => boolean, ms = 20_000): Promise<void> {
  const start = Date.now();
  while (!done()) {
    if (Date.now() - start > ms) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}
