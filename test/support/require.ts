/**
 * Tests that need a server or binary that is missing skip with a loud message on a developer's
 * machine; with DAMSELFLY_REQUIRE_ALL=1 (set by .ci/run) the missing dependency is a failure.
 *
 *   const pg = await probePostgres();
 *   describe.skipIf(!requireOrSkip(pg.ok, 'PostgreSQL on 127.0.0.1:5432', pg.reason))(...)
 */
export const REQUIRE_ALL = process.env.DAMSELFLY_REQUIRE_ALL === '1';

/** Returns true when `available`; otherwise warns loudly (or throws under DAMSELFLY_REQUIRE_ALL=1). */
export function requireOrSkip(available: boolean, what: string, reason = ''): boolean {
  if (available) return true;
  const msg = `${what} is not available${reason ? ` (${reason})` : ''}`;
  if (REQUIRE_ALL) throw new Error(`DAMSELFLY_REQUIRE_ALL=1: ${msg}; install it (see .ci/run) instead of skipping`);
  const bar = '!'.repeat(78);
  process.stderr.write(`\n${bar}\n!! SKIPPING tests: ${msg}.\n!! Set it up (see .ci/run) to run them; CI runs them all.\n${bar}\n\n`);
  return false;
}
