// Waiting in tests: for a condition, with what was waited for in the failure.

/** Waits until `done()` holds (checked every 20 ms, or as soon as an async check ends), failing after `ms`. */
export async function until(
  what: string,
  done: () => boolean | Promise<boolean>,
  ms = 20_000,
): Promise<void> {
  const start = Date.now();
  while (!(await done())) {
    if (Date.now() - start > ms) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}
