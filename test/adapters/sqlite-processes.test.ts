/**
 * SQLite is "safe under several processes on one machine": three OS processes (the compiled
 * adapters, as deployed) share one database file, race compare-and-set increments on one counter
 * and consume one queue. No update may be lost and no message delivered twice or lost.
 * Needs the compiled tree (npm test builds it; DAMSELFLY_CLI points at another build).
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { createKvStore, createQueue } from '../../adapters/stores.js';
import { cliPath } from '../support/cli.js';
import { requireOrSkip } from '../support/require.js';

function compiledStores(): string | undefined {
  try {
    const p = path.join(path.dirname(path.dirname(cliPath())), 'adapters', 'stores.js');
    return existsSync(p) ? p : undefined;
  } catch {
    return undefined;
  }
}

const stores = compiledStores();
const PROCS = 3;
const INCREMENTS = 40;
const MESSAGES = 60;

// Each child: INCREMENTS CAS increments with retry, then consume until the shared queue is drained.
const child = `
const { createKvStore, createQueue } = await import(process.env.STORES_URL);
const cfg = { kind: 'sqlite', path: process.env.DB, timeoutMs: 10000 };
const kv = await createKvStore(cfg);
const q = await createQueue({ ...cfg, maxReceives: 5 });
let conflicts = 0;
// Start together, so that the increments really race.
await new Promise((r) => setTimeout(r, Math.max(0, Number(process.env.START_AT) - Date.now())));
for (let i = 0; i < ${INCREMENTS}; i++) {
  for (;;) {
    const cur = await kv.get('counter');
    await new Promise((r) => setTimeout(r, 1)); // some work between read and write widens the race
    try { await kv.update('counter', cur.value + 1, cur.version); break; }
    catch (e) { if (e.code !== 'CONFLICT') throw e; conflicts++; }
  }
}
const got = [];
for (let idle = 0; idle < 3; ) {
  const ms = await q.receive('work', { max: 2, waitMs: 300, visibilityMs: 60000 });
  if (ms.length === 0) { idle++; continue; }
  idle = 0;
  for (const m of ms) { got.push(m.body.n); await new Promise((r) => setTimeout(r, 2)); await q.ack('work', m.receipt); }
}
process.stdout.write(JSON.stringify({ conflicts, got }));
await kv.close(); await q.close();
`;

describe.skipIf(!requireOrSkip(stores !== undefined, 'the compiled adapters (dist/adapters/stores.js)', 'run npm run build'))('sqlite: several processes on one file', () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'damselfly-sqlite-procs-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('loses no update and delivers each message once across processes', async () => {
    const db = path.join(dir, 'shared.db');
    const kv = await createKvStore({ kind: 'sqlite', path: db });
    const q = await createQueue({ kind: 'sqlite', path: db });
    await kv.create('counter', 0);
    for (let n = 0; n < MESSAGES; n++) await q.send('work', { n });
    const startAt = Date.now() + 1_500;
    const outputs = await Promise.all(
      Array.from({ length: PROCS }, () =>
        new Promise<{ conflicts: number; got: number[] }>((resolve, reject) => {
          const p = spawn(process.execPath, ['--input-type=module', '-e', child], {
            env: { ...process.env, DB: db, STORES_URL: pathToFileURL(stores!).href, START_AT: String(startAt) },
            stdio: ['ignore', 'pipe', 'pipe'],
          });
          let out = '';
          let err = '';
          p.stdout.on('data', (d) => (out += d));
          p.stderr.on('data', (d) => (err += d));
          p.on('exit', (code) => (code === 0 ? resolve(JSON.parse(out)) : reject(new Error(`child exited ${code}: ${err.slice(-2000)}`))));
        }),
      ),
    );
    expect((await kv.get<number>('counter'))?.value).toBe(PROCS * INCREMENTS);
    process.stderr.write(`sqlite processes: ${outputs.map((o) => o.conflicts).join('/')} CAS conflicts, ${outputs.map((o) => o.got.length).join('/')} messages\n`);
    const all = outputs.flatMap((o) => o.got).sort((a, b) => a - b);
    expect(all).toEqual(Array.from({ length: MESSAGES }, (_, n) => n));
    await kv.close();
    await q.close();
  });
});
