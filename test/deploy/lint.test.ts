// `npm run lint` (dependency-cruiser, .dependency-cruiser.cjs) passes on the tree and fails on each
// kind of import the house forbids, tried on a throwaway tree with the same rules.
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { repoRoot } from '../support/cli.js';

const depcruise = path.join(repoRoot, 'node_modules/.bin/depcruise');
const config = path.join(repoRoot, '.dependency-cruiser.cjs');
const tmp: string[] = [];
afterAll(() => tmp.forEach((d) => rmSync(d, { recursive: true, force: true })));

function cruise(cwd: string): { status: number | null; out: string } {
  const r = spawnSync(depcruise, ['adapters', 'agent', 'scheduler', 'control', 'test', '--config', config, '--no-progress'], { cwd, encoding: 'utf8' });
  return { status: r.status, out: r.stdout + r.stderr };
}

function tree(files: Record<string, string>): string {
  const d = mkdtempSync(path.join(os.tmpdir(), 'damselfly-lint-'));
  tmp.push(d);
  writeFileSync(path.join(d, 'tsconfig.json'), JSON.stringify({ compilerOptions: { module: 'nodenext', moduleResolution: 'nodenext', allowImportingTsExtensions: false } }));
  for (const dir of ['adapters', 'agent', 'scheduler/protocol', 'control', 'test']) mkdirSync(path.join(d, dir), { recursive: true });
  for (const [f, text] of Object.entries(files)) writeFileSync(path.join(d, f), text);
  return d;
}

describe('npm run lint', () => {
  it('passes on this tree', () => {
    const r = cruise(repoRoot);
    expect(r.out).toContain('no dependency violations');
    expect(r.status).toBe(0);
  }, 120_000);

  it.each([
    ['an agent importing control', { 'agent/a.ts': "import '../control/c.js';\n", 'control/c.ts': 'export {};\n' }, 'roles-do-not-import-control'],
    ['adapters importing a role', { 'adapters/a.ts': "import '../scheduler/s.js';\n", 'scheduler/s.ts': 'export {};\n' }, 'adapters-import-nothing-above'],
    ['the scheduler importing the agent', { 'scheduler/s.ts': "import '../agent/a.js';\n", 'agent/a.ts': 'export {};\n' }, 'scheduler-does-not-import-agent'],
    ['the agent importing scheduler internals', { 'agent/a.ts': "import '../scheduler/s.js';\n", 'scheduler/s.ts': 'export {};\n' }, 'agent-imports-only-the-protocol-of-the-scheduler'],
    ['production code importing test code', { 'agent/a.ts': "import '../test/t.js';\n", 'test/t.ts': 'export {};\n' }, 'no-test-code-in-production'],
    ['a runtime cycle', { 'agent/a.ts': "import './b.js';\nexport const a = 1;\n", 'agent/b.ts': "import { a } from './a.js';\nexport const b = a;\n" }, 'no-circular'],
  ])('fails on %s', (_what, files, rule) => {
    const r = cruise(tree(files));
    expect(r.out).toContain(rule);
    expect(r.status).not.toBe(0);
  }, 120_000);

  it('allows the agent to import the protocol room', () => {
    const r = cruise(tree({ 'agent/a.ts': "import '../scheduler/protocol/p.js';\n", 'scheduler/protocol/p.ts': 'export {};\n' }));
    expect(r.status).toBe(0);
  }, 120_000);
});
