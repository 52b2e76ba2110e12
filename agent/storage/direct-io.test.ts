// copyFileDirect: the export copy of `get` (agent/download/manager.ts exportCopy) on ext4 here, so
// O_DIRECT really runs.
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { copyFileDirect } from './direct-io.js';

const dirs: string[] = [];
const tmp = (base = os.tmpdir()): string => {
  const d = mkdtempSync(path.join(base, 'damselfly-dio-'));
  dirs.push(d);
  return d;
};
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});
const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

describe('copyFileDirect', () => {
  it('copies exactly, whatever the size against the 4 KiB alignment and the 4 MiB chunk', async () => {
    const d = tmp();
    for (const size of [1, 4095, 4096, 4097, (4 << 20) - 1, 4 << 20, (4 << 20) + 1, (9 << 20) + 123]) {
      const src = path.join(d, `src-${size}`);
      const body = randomBytes(size);
      writeFileSync(src, body);
      const dst = path.join(d, `dst-${size}`);
      expect(await copyFileDirect(src, dst, size), `size ${size}`).toBe(true);
      expect(statSync(dst).size, `size ${size}`).toBe(size);
      expect(sha(readFileSync(dst)), `size ${size}`).toBe(sha(body));
    }
  });

  it('copies the first `size` bytes of a longer file; a shorter one throws and leaves no output', async () => {
    const d = tmp();
    const src = path.join(d, 'src');
    const body = randomBytes(3 * 4096 + 5);
    writeFileSync(src, body);
    expect(await copyFileDirect(src, path.join(d, 'head'), 4096 + 1)).toBe(true);
    expect(readFileSync(path.join(d, 'head')).equals(body.subarray(0, 4097))).toBe(true);
    await expect(copyFileDirect(src, path.join(d, 'long'), body.length + 1)).rejects.toThrow(/holds .* bytes, expected/);
    expect(existsSync(path.join(d, 'long'))).toBe(false);
  });

  it('never overwrites: an existing output is EEXIST and stays as it was', async () => {
    const d = tmp();
    writeFileSync(path.join(d, 'src'), randomBytes(8192));
    writeFileSync(path.join(d, 'dst'), 'mine');
    await expect(copyFileDirect(path.join(d, 'src'), path.join(d, 'dst'), 8192)).rejects.toMatchObject({ code: 'EEXIST' });
    expect(readFileSync(path.join(d, 'dst'), 'utf8')).toBe('mine');
  });

  it('on tmpfs (O_DIRECT only on recent kernels): an exact copy, or false and nothing created', async () => {
    if (!existsSync('/dev/shm')) return;
    const d = tmp('/dev/shm');
    const body = randomBytes(8192 + 3);
    writeFileSync(path.join(d, 'src'), body);
    const ok = await copyFileDirect(path.join(d, 'src'), path.join(d, 'dst'), body.length);
    if (ok) expect(sha(readFileSync(path.join(d, 'dst')))).toBe(sha(body));
    else expect(existsSync(path.join(d, 'dst'))).toBe(false);
  });
});
