/**
 * Where integration tests find the compiled `damselfly` CLI. `npm test` builds into dist/; a
 * developer building elsewhere (e.g. `.build/<name>/`) points DAMSELFLY_CLI at it.
 */
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import path from 'node:path';

/** The repository root: the nearest ancestor holding package.json (works from test/ and dist-test/test/). */
function findRepoRoot(start: string): string {
  let dir = start;
  for (;;) {
    if (existsSync(path.join(dir, 'package.json')) && existsSync(path.join(dir, 'scheduler'))) return dir;
    const parent = path.dirname(dir);
    if (parent === dir) throw new Error(`cannot find the repository root above ${start}`);
    dir = parent;
  }
}

export const repoRoot = findRepoRoot(path.dirname(fileURLToPath(import.meta.url)));

/** Whether the compiled CLI exists (tests needing it skip, loudly, when not). */
export function cliBuilt(): boolean {
  try {
    cliPath();
    return true;
  } catch {
    return false;
  }
}

/** Path of the compiled CLI. Throws when it has not been built. */
export function cliPath(): string {
  const p = process.env.DAMSELFLY_CLI ?? path.join(repoRoot, 'dist', 'control', 'cli.js');
  if (!existsSync(p)) throw new Error(`compiled CLI not found at ${p}: run "npm run build" first (npm test does)`);
  return p;
}
