/**
 * Where integration tests find the compiled `damselfly` CLI. `npm test` builds into dist/; a
 * developer building elsewhere (e.g. `.build/<name>/`) points DAMSELFLY_CLI at it.
 */
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import path from 'node:path';

export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

export function cliPath(): string {
  const p = process.env.DAMSELFLY_CLI ?? path.join(repoRoot, 'dist', 'control', 'cli.js');
  if (!existsSync(p)) throw new Error(`compiled CLI not found at ${p}: run "npm run build" first (npm test does)`);
  return p;
}
