/**
 * `damselfly ca init --dir DIR [--force] [--common-name CN]`: creates the CA the proxy uses to
 * intercept CONNECT to registry hosts (proxy.server.caCert / caKey). The key is written 0600.
 */
import { existsSync } from 'node:fs';
import { chmod, mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { parseCommand } from '../../adapters/cli.js';
import { errorMessage } from '../../adapters/errors.js';
import { createCa } from './ca.js';

const USAGE = `usage: damselfly ca init --dir DIR [--force] [--common-name CN]

Creates ca.crt and ca.key (mode 0600) in DIR for the proxy's HTTPS interception. Point the agent at
them with proxy.server.caCert / proxy.server.caKey, and make clients trust ca.crt.

options:
  --dir DIR           output directory (created if missing)
  --force             overwrite an existing ca.crt / ca.key
  --common-name CN    subject CN (default "Damselfly proxy CA")
  -h, --help          this help
`;

export async function main(argv: string[]): Promise<number> {
  const parsed = parseCommand('ca', USAGE, {
    args: argv,
    allowPositionals: true,
    options: {
      dir: { type: 'string' },
      force: { type: 'boolean', default: false },
      'common-name': { type: 'string', default: 'Damselfly proxy CA' },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  if (typeof parsed === 'number') return parsed;
  const { values, positionals } = parsed;
  if (positionals[0] !== 'init' || positionals.length !== 1 || !values.dir) {
    process.stderr.write(USAGE);
    return 2;
  }
  const dir = path.resolve(values.dir);
  const certFile = path.join(dir, 'ca.crt');
  const keyFile = path.join(dir, 'ca.key');
  if (!values.force && (existsSync(certFile) || existsSync(keyFile))) {
    process.stderr.write(`damselfly ca: ${existsSync(keyFile) ? keyFile : certFile} exists; pass --force to replace it\n`);
    return 1;
  }
  const ca = createCa(values['common-name']);
  await mkdir(dir, { recursive: true });
  await writeFile(keyFile, ca.key, { mode: 0o600 });
  await chmod(keyFile, 0o600);
  await writeFile(certFile, ca.cert, { mode: 0o644 });
  process.stdout.write(`${JSON.stringify({ caCert: certFile, caKey: keyFile })}\n`);
  return 0;
}
