/** resolveJoinToken: where a component's join token comes from, and the errors that name the field. */
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { formatSize, parseSize, resolveJoinToken } from './config.js';

describe('resolveJoinToken', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'damselfly-join-token-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const file = (name: string, text: string) => {
    const f = path.join(dir, name);
    writeFileSync(f, text, { mode: 0o600 });
    return f;
  };

  it('reads the file (a compose or Kubernetes secret), trimming the newline an editor or echo adds', () => {
    expect(resolveJoinToken({ joinTokenFile: file('t', 'a-join-token-of-32-characters-xx\n') }, {})).toBe('a-join-token-of-32-characters-xx');
  });
  it('falls back to DAMSELFLY_JOIN_TOKEN, and a key in the file wins over it', () => {
    expect(resolveJoinToken({}, { DAMSELFLY_JOIN_TOKEN: 'from-the-environment' })).toBe('from-the-environment');
    expect(resolveJoinToken({ joinToken: 'from-the-config-file' }, { DAMSELFLY_JOIN_TOKEN: 'from-the-environment' })).toBe('from-the-config-file');
    expect(resolveJoinToken({}, {})).toBeUndefined();
  });
  it('refuses both keys, a missing or unreadable file, and a file too short to be a token, naming the field and path', () => {
    expect(() => resolveJoinToken({ joinToken: 'x'.repeat(16), joinTokenFile: '/x' }, {})).toThrow(/security: set joinToken or joinTokenFile, not both/);
    const missing = path.join(dir, 'absent');
    expect(() => resolveJoinToken({ joinTokenFile: missing }, {})).toThrow(new RegExp(`security.joinTokenFile: cannot read ${missing}`));
    expect(() => resolveJoinToken({ joinTokenFile: file('short', ' short \n') }, {})).toThrow(/security.joinTokenFile: .*short holds 5 characters; expected a join token of at least 16/);
    expect(() => resolveJoinToken({ joinTokenFile: file('empty', '') }, {})).toThrow(/holds 0 characters/);
    if (process.getuid?.() !== 0) {
      const locked = file('locked', 'x'.repeat(32));
      chmodSync(locked, 0);
      expect(() => resolveJoinToken({ joinTokenFile: locked }, {})).toThrow(/cannot read/);
    }
  });
});

describe('formatSize', () => {
  it('prints binary units with one decimal, whole bytes without, and reads back with parseSize', () => {
    expect(formatSize(0)).toBe('0B');
    expect(formatSize(1023)).toBe('1023B');
    expect(formatSize(1536)).toBe('1.5KiB');
    expect(formatSize(1536, ' ')).toBe('1.5 KiB');
    expect(formatSize(5 * 1024 ** 4 * 1024)).toBe('5120.0TiB');
    for (const n of [1, 4096, 64 * 1024 ** 2, 3 * 1024 ** 3]) expect(parseSize(formatSize(n))).toBe(n);
  });
});
