import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const committed = path.join(root, 'scheduler', 'protocol', 'generated');
const tmp = mkdtempSync(path.join(os.tmpdir(), 'damselfly-proto-gen-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

function files(dir: string, rel = ''): string[] {
  return readdirSync(path.join(dir, rel), { withFileTypes: true })
    .flatMap((e) => (e.isDirectory() ? files(dir, path.join(rel, e.name)) : [path.join(rel, e.name)]))
    .sort();
}

describe('generated protocol types', () => {
  it('are what `npm run proto:gen` makes of damselfly.proto today', () => {
    // The generator command is package.json's own, pointed at a scratch directory.
    const script = (JSON.parse(readFileSync(path.join(root, 'package.json'), 'utf8')) as { scripts: Record<string, string> }).scripts['proto:gen'];
    const gen = script.split('&&').map((s) => s.trim()).find((s) => s.startsWith('proto-loader-gen-types'))!;
    const args = gen.split(/\s+/).slice(1).map((a) => (a.startsWith('--outDir=') ? `--outDir=${tmp}` : a));
    expect(args).toContain(`--outDir=${tmp}`);
    execFileSync(path.join(root, 'node_modules', '.bin', 'proto-loader-gen-types'), args, { cwd: root, stdio: 'pipe' });
    const fresh = files(tmp);
    expect(fresh.length).toBeGreaterThan(10);
    expect(files(committed), 'run `npm run proto:gen` and commit scheduler/protocol/generated').toEqual(fresh);
    for (const f of fresh) {
      expect(readFileSync(path.join(committed, f), 'utf8'), `${f} is stale: run \`npm run proto:gen\``).toBe(readFileSync(path.join(tmp, f), 'utf8'));
    }
  });
});
