import { readFileSync } from 'node:fs';

function readVersion(): string {
  // dist/adapters/version.js and adapters/version.ts both sit two levels below package.json.
  for (const rel of ['../../package.json', '../package.json']) {
    try {
      return (JSON.parse(readFileSync(new URL(rel, import.meta.url), 'utf8')) as { version: string }).version;
    } catch {
      /* try the next location */
    }
  }
  return '0.0.0';
}

export const version = readVersion();
