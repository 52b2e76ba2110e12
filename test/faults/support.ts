/** Helpers of the fault suite (test/faults/*.test.ts) and bench:faults. */
import { closeSync, existsSync, openSync, readdirSync, readSync, writeSync } from 'node:fs';
import path from 'node:path';
import http from 'node:http';
import { createHash } from 'node:crypto';
import type { RoleProcess } from '../support/procs.js';

/** Every regular file under `dir` (recursive). */
export function filesUnder(dir: string): string[] {
  if (!existsSync(dir)) return [];
  const out: string[] = [];
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) out.push(...filesUnder(p));
    else if (e.isFile()) out.push(p);
  }
  return out;
}

/** The content files of an agent spawned by startCluster (storage.dir = <its dir>/storage). */
export function contentFiles(agent: RoleProcess, storageDir = path.join(agent.dir, 'storage')): string[] {
  return filesUnder(path.join(storageDir, 'content'));
}

/** Inverts the byte at `at` of `file` in place, as a stray write or a bad disk would change it. */
export function flipByte(file: string, at: number): void {
  const fd = openSync(file, 'r+');
  try {
    const b = Buffer.alloc(1);
    readSync(fd, b, 0, 1, at);
    b[0] ^= 0xff;
    writeSync(fd, b, 0, 1, at);
  } finally {
    closeSync(fd);
  }
}

/** GET `url` through the agent's HTTP proxy; resolves status, sha256 of the body and whether it completed. */
export function getViaProxy(agent: RoleProcess, url: string): Promise<{ status: number; sha256: string; bytes: number; complete: boolean }> {
  const proxy = new URL(`http://127.0.0.1:${Number(String(agent.ready.proxy).split(':').pop())}`);
  return new Promise((resolve, reject) => {
    const req = http.request({ host: proxy.hostname, port: proxy.port, path: url, headers: { host: new URL(url).host } }, (res) => {
      const h = createHash('sha256');
      let bytes = 0;
      res.on('data', (c: Buffer) => {
        bytes += c.length;
        h.update(c);
      });
      const done = (complete: boolean) => resolve({ status: res.statusCode ?? 0, sha256: `sha256:${h.digest('hex')}`, bytes, complete });
      res.on('end', () => done(res.complete));
      res.on('error', () => done(false));
      res.on('aborted', () => undefined);
    });
    req.on('error', reject);
    req.end();
  });
}
