// The README's quick start, run literally on a fresh clone: the block under
// `<!-- quickstart:terminal-1 -->` (npm ci && npm start) runs in the background until `damselfly up`
// says it is running, then the block under `<!-- quickstart:terminal-2 -->` must exit 0 and leave the
// downloaded file in place. HOME points at a temp dir so `~/.damselfly` is the test's own.
import { afterAll, describe, expect, it } from 'vitest';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { repoRoot } from '../support/cli.js';
import { requireOrSkip } from '../support/require.js';

/** The fenced code block that follows `<!-- marker -->` in the README. */
function block(readme: string, marker: string): string {
  const at = readme.indexOf(`<!-- ${marker} -->`);
  if (at < 0) throw new Error(`README.md has no <!-- ${marker} --> block`);
  const m = /```(?:sh|bash)?\n([\s\S]*?)```/.exec(readme.slice(at));
  if (!m) throw new Error(`README.md: no code block after <!-- ${marker} -->`);
  return m[1]!;
}

const sha256 = (file: string): string => createHash('sha256').update(readFileSync(file)).digest('hex');

const haveGit = spawnSync('git', ['-C', repoRoot, 'rev-parse', 'HEAD']).status === 0;
const havePython = spawnSync('python3', ['--version']).status === 0;
const haveCurl = spawnSync('curl', ['--version']).status === 0;
const ready = requireOrSkip(haveGit && havePython && haveCurl, 'git checkout, python3 and curl for the README quick start', [!haveGit && 'not a git checkout', !havePython && 'no python3', !haveCurl && 'no curl'].filter(Boolean).join(', '));

let dir: string | undefined;
let terminal1: ChildProcess | undefined;

afterAll(async () => {
  if (terminal1?.pid && terminal1.exitCode === null) {
    try {
      process.kill(-terminal1.pid, 'SIGKILL');
    } catch {
      /* already gone */
    }
  }
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe.skipIf(!ready)('README quick start on a fresh clone', () => {
  it('npm ci && npm start, then a download through the agent and the manager answering', async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'damselfly-readme-'));
    const clone = path.join(dir, 'damselfly');
    const home = path.join(dir, 'home');
    mkdirSync(home);
    const git = spawnSync('git', ['clone', '-q', repoRoot, clone], { encoding: 'utf8' });
    expect(git.status, git.stderr).toBe(0);
    const readme = readFileSync(path.join(clone, 'README.md'), 'utf8');
    const t1 = block(readme, 'quickstart:terminal-1');
    const t2 = block(readme, 'quickstart:terminal-2');

    // The user's npm cache is reused (HOME is redirected only so ~/.damselfly is the test's own).
    const npmCache = spawnSync('npm', ['config', 'get', 'cache'], { encoding: 'utf8' }).stdout.trim();
    const env: NodeJS.ProcessEnv = { ...process.env, HOME: home, npm_config_cache: npmCache, DAMSELFLY_LOG_LEVEL: "warn" };
    delete env.DAMSELFLY_CLI;

    let out = '';
    terminal1 = spawn('bash', ['-c', t1], { cwd: clone, env, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
    terminal1.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    terminal1.stderr!.on('data', (d: Buffer) => (out += d.toString()));
    const exited = new Promise<number | null>((r) => terminal1!.once('exit', (code) => r(code)));
    const deadline = Date.now() + 9 * 60_000;
    while (!/damselfly up: running/.test(out)) {
      if (terminal1.exitCode !== null) throw new Error(`terminal 1 exited (${terminal1.exitCode}) before damselfly up was running:\n${out.slice(-4000)}`);
      if (Date.now() > deadline) throw new Error(`damselfly up not running after 9 minutes:\n${out.slice(-4000)}`);
      await new Promise((r) => setTimeout(r, 500));
    }
    expect(out).toMatch(/generated password, shown once/);
    expect(existsSync(path.join(home, '.damselfly', 'agent.sock'))).toBe(true);

    const r = spawnSync('bash', ['-e', '-c', t2], { cwd: clone, env, encoding: 'utf8', timeout: 120_000 });
    expect(r.status, `terminal 2 failed:\n${r.stdout}\n${r.stderr}\n--- terminal 1:\n${out.slice(-3000)}`).toBe(0);
    expect(r.stdout).toContain('"OK"');
    expect(r.stderr).not.toMatch(/from the origin directly/);
    expect(sha256('/tmp/typescript.js')).toBe(sha256(path.join(clone, 'node_modules/typescript/lib/typescript.js')));

    // Ctrl-C in terminal 1 stops everything.
    process.kill(-terminal1.pid!, 'SIGINT');
    const code = await Promise.race([exited, new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), 30_000))]);
    expect(code).not.toBe('timeout');
    // ... and leaves nothing running: no role of this tree (their configs live under the test's HOME).
    const left = () => spawnSync('pgrep', ['-f', home], { encoding: 'utf8' }).stdout.split('\n').filter(Boolean);
    for (let i = 0; i < 100 && left().length > 0; i++) await new Promise((r) => setTimeout(r, 200));
    expect(left(), 'processes left running after Ctrl-C').toEqual([]);
  }, 12 * 60_000);
});
