/**
 * The teardown every test with real processes needs, registered once: after each test every role it
 * spawned is killed and whatever `closers` return (origins, registries) is closed, once each, also
 * when the test failed; after the file its temp dirs are removed.
 *
 *   let origin: Origin | undefined;
 *   useRoleTeardown(() => origin);
 */
import { afterAll, afterEach } from 'vitest';
import { cleanupTempDirs, killAll } from './procs.js';

interface Closable {
  close(): Promise<void> | void;
}

export function useRoleTeardown(...closers: Array<() => Closable | undefined>): void {
  const closed = new WeakSet<Closable>();
  afterEach(async () => {
    await killAll();
    for (const get of closers) {
      const c = get();
      if (!c || closed.has(c)) continue;
      closed.add(c);
      await c.close();
    }
  });
  afterAll(() => cleanupTempDirs());
}
