/**
 * `damselfly config containerd|nydusd|podman|docker [--mirror URL] [--registry R]... [--write DIR]`:
 * prints (or writes) the client configuration that points a container client at the agent.
 */
import { readFileSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { parseCommand } from '../../adapters/cli.js';
import { errorMessage } from '../../adapters/errors.js';
import { CLIENT_KINDS, generateClientConfig, parseProxyAuth, type ClientKind } from './client-config.js';

const USAGE = `usage: damselfly config <containerd|nydusd|podman|docker> [options]

Prints the configuration that points a container client at the agent's registry mirror / proxy.

options:
  --mirror URL        the agent's proxy (default http://127.0.0.1:4001)
  --registry R        upstream registry, host[:port] or URL; repeatable (default https://index.docker.io)
  --write DIR         write the files under DIR instead of printing them
  --config-path DIR   containerd: the hosts directory containerd reads (default: --write DIR, else /etc/containerd/certs.d)
  --ca FILE           docker: the proxy CA (damselfly ca init) to install under certs.d/<host>/ca.crt
  --proxy-auth U:P    the agent's proxy.basicAuth (also DAMSELFLY_PROXY_AUTH, which keeps it out of ps):
                      containerd/nydusd mirrors send Proxy-Authorization; docker, podman and nydusd's
                      proxy mode use http://U:P@agent as HTTP(S)_PROXY (podman and docker then use no mirror entry)
  -h, --help          this help
`;

export async function main(argv: string[]): Promise<number> {
  const parsed = parseCommand('config', USAGE, {
    args: argv,
    allowPositionals: true,
    options: {
      mirror: { type: 'string', default: 'http://127.0.0.1:4001' },
      registry: { type: 'string', multiple: true, default: [] },
      write: { type: 'string' },
      'config-path': { type: 'string' },
      ca: { type: 'string' },
      'proxy-auth': { type: 'string' },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  if (typeof parsed === 'number') return parsed;
  const { values, positionals } = parsed;
  const kind = positionals[0] as ClientKind | undefined;
  if (!kind || !CLIENT_KINDS.includes(kind) || positionals.length > 1) {
    process.stderr.write(`damselfly config: expected one of ${CLIENT_KINDS.join(', ')}\n\n${USAGE}`);
    return 2;
  }
  let caPem: string | undefined;
  if (values.ca) {
    try {
      caPem = readFileSync(values.ca, 'utf8');
    } catch (e) {
      process.stderr.write(`damselfly config: cannot read --ca ${values.ca}: ${errorMessage(e)}\n`);
      return 1;
    }
  }
  const proxyAuthArg = values['proxy-auth'] ?? (process.env.DAMSELFLY_PROXY_AUTH || undefined);
  let proxyAuth;
  try {
    proxyAuth = proxyAuthArg ? parseProxyAuth(proxyAuthArg, values['proxy-auth'] ? '--proxy-auth' : 'DAMSELFLY_PROXY_AUTH') : undefined;
  } catch (e) {
    process.stderr.write(`damselfly config: ${errorMessage(e)}\n`);
    return 2;
  }
  const writeDir = values.write ? path.resolve(values.write) : undefined;
  let files;
  try {
    files = generateClientConfig(kind, {
      mirror: values.mirror,
      registries: values.registry,
      configPath: values['config-path'] ?? writeDir,
      caPem,
      proxyAuth,
    });
  } catch (e) {
    process.stderr.write(`damselfly config: ${errorMessage(e)}\n`);
    return 2;
  }
  if (!writeDir) {
    for (const f of files) process.stdout.write(`# ==> ${f.path} <==\n# ${f.note}\n${f.content}\n`);
    return 0;
  }
  for (const f of files) {
    const target = path.join(writeDir, f.path);
    await mkdir(path.dirname(target), { recursive: true });
    // Files that carry the proxy password are readable by their owner only.
    await writeFile(target, f.content, proxyAuth ? { mode: 0o600 } : undefined);
    process.stdout.write(`${target}\n`);
  }
  return 0;
}
