/**
 * infra/docs/configuration.md is generated from the zod schemas; this fails when it is stale (a key
 * added, a default or a doc comment changed) and `DAMSELFLY_UPDATE=1` rewrites it.
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { describe, expect, it } from 'vitest';
import { docComments, REFERENCE_FILE, renderConfigReference } from '../../infra/docs/render-config-reference.js';

const text = renderConfigReference();
if (process.env.DAMSELFLY_UPDATE === '1') writeFileSync(REFERENCE_FILE, text);

describe('configuration reference', () => {
  it('is up to date with the schemas', () => {
    expect(existsSync(REFERENCE_FILE)).toBe(true);
    expect(readFileSync(REFERENCE_FILE, 'utf8'), 'stale: run DAMSELFLY_UPDATE=1 npx vitest run test/deploy/config-reference.test.ts').toBe(text);
  });

  it('documents every role and store kind, with defaults as a user writes them', () => {
    for (const heading of ['## Agent and seed peer', '## Scheduler', '## Manager', '### KV store: `kind: dynamodb`', '### Queue store: `kind: sqs`']) {
      expect(text).toContain(heading);
    }
    expect(text).toMatch(/\| `proxy\.server\.port` \| integer 0–65535 \| `4001` \|/);
    expect(text).toMatch(/\| `scheduler\.announceInterval` \| duration [^|]*\| `30s` \|/);
    expect(text).toMatch(/\| `host\.hostname` \| [^|]*\| \(this machine's hostname\) \|/);
    expect(text).toMatch(/\| `proxy\.rules\[\]\.regex` \|/);
    // No machine-specific value leaks in (the file must be identical on every machine).
    expect(text).not.toContain(`\`"${os.hostname()}"\``);
  });

  it('takes descriptions from the doc comments beside the keys', () => {
    const comments = docComments('agent/proxy-config.ts');
    const doc = comments.get('proxyConfigSchema.disableBackToSource');
    expect(doc).toMatch(/origin/);
    expect(text).toContain(doc!);
  });
});
