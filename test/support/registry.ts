/**
 * Real OCI registries for integration tests: Debian's `docker-registry` (distribution 2.8) on a free
 * 127.0.0.1 port with a config of its own, behind a small counting front (Node reverse proxy) that
 * counts blob GETs by digest, can answer blob GETs with 307 to a second "object storage" host with
 * signed-looking query parameters, and can play a Bearer token-auth server. Images are built with
 * umoci from generated content and pushed with skopeo.
 *
 *   const reg = await startRegistry({ auth: 'none' });
 *   const img = await buildImage({ layers: [1 << 20, 3 << 20] });
 *   const pushed = await pushImage(img, `${reg.host}/test/app:v1`, { creds: reg.creds });
 *   ... reg.blobGets.get(digest) ...
 *   await reg.close(); await img.cleanup();
 *
 * Needs the binaries docker-registry, umoci, skopeo, tar (see `registryToolsAvailable()`); the
 * htpasswd mode also needs a bcrypt hasher: `htpasswd -B` (apache2-utils) or python3's `crypt`.
 */
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { createWriteStream, existsSync } from 'node:fs';
import { mkdtemp, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';

const execFileP = promisify(execFile);

export type RegistryAuth = 'none' | 'htpasswd' | 'token';

export interface StartRegistryOptions {
  auth?: RegistryAuth;
  /** Answer blob GETs with 307 to a separate storage host (like S3-backed registries do). */
  redirectBlobs?: boolean;
  /** Credentials for 'htpasswd' and 'token' (default user "tester", random password). */
  username?: string;
  password?: string;
  /** With 'token': allow anonymous pull tokens (default true; push always needs credentials). */
  anonymousPull?: boolean;
}

export interface RegistryRequest {
  method: string;
  url: string;
  status: number;
  authorization: boolean;
  /** The W3C traceparent header the front received, if any. */
  traceparent?: string;
}

export interface RunningRegistry {
  /** host:port clients use in image references (the counting front). */
  host: string;
  /** http://host:port of the counting front. */
  url: string;
  /** The distribution process itself, bypassing the front (not counted). */
  backendUrl: string;
  /** Credentials for pushes/pulls when auth is not 'none'. */
  creds?: { username: string; password: string };
  /** GETs of /v2/<name>/blobs/<digest> answered 2xx/3xx by the front, by digest. */
  blobGets: Map<string, number>;
  /** GETs received by the redirect target (storage host), by digest; only with redirectBlobs. */
  storageGets: Map<string, number>;
  /** Requests that reached the storage host carrying an Authorization header (must stay 0). */
  storageAuthLeaks: number;
  /** Every request the front saw (method, URL, final status, whether Authorization was present). */
  requests: RegistryRequest[];
  /** Tokens issued by the token endpoint ('token' mode). */
  tokensIssued: number;
  /**
   * While set, each GET of this blob through the front is cut off (connection destroyed) after
   * `afterBytes` bytes of its body, as a registry or network dying mid-blob would; `cuts` counts them.
   */
  cutBlob?: { digest: string; afterBytes: number };
  cuts: number;
  totalBlobGets(): number;
  resetCounters(): void;
  close(): Promise<void>;
}

/** True when docker-registry, umoci, skopeo and tar are all on PATH. */
export function registryToolsAvailable(): { ok: boolean; missing: string[] } {
  const missing = ['docker-registry', 'umoci', 'skopeo', 'tar'].filter((b) => !onPath(b));
  return { ok: missing.length === 0, missing };
}

export function onPath(bin: string): boolean {
  return (process.env.PATH ?? '').split(path.delimiter).some((d) => d && existsSync(path.join(d, bin)));
}

/** A port that was free a moment ago on 127.0.0.1 (for servers that cannot report an ephemeral one). */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

async function bcryptHash(password: string): Promise<string> {
  if (onPath('htpasswd')) {
    const { stdout } = await execFileP('htpasswd', ['-nbB', 'x', password]);
    return stdout.trim().split(':')[1]!;
  }
  // python3's crypt (deprecated but present through 3.12) produces $2b$ hashes Go's bcrypt accepts.
  const { stdout } = await execFileP('python3', [
    '-W', 'ignore', '-c',
    'import crypt,sys; print(crypt.crypt(sys.argv[1], crypt.mksalt(crypt.METHOD_BLOWFISH)))', password,
  ]);
  const h = stdout.trim();
  if (!h.startsWith('$2')) throw new Error('no bcrypt hasher: install apache2-utils (htpasswd)');
  return h;
}

async function waitHttp(url: string, okStatuses: number[], timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = '';
  while (Date.now() < deadline) {
    try {
      const res = await fetch(url);
      await res.arrayBuffer();
      if (okStatuses.includes(res.status)) return;
      last = `status ${res.status}`;
    } catch (e) {
      last = String(e);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${url} did not come up: ${last}`);
}

const BLOB_RE = /^\/v2\/(.+)\/blobs\/(sha256:[0-9a-f]{64})$/;

function listen(server: http.Server): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve((server.address() as net.AddressInfo).port));
  });
}

/** Starts docker-registry with its own config/data dir and a counting front; see the file header. */
export async function startRegistry(opts: StartRegistryOptions = {}): Promise<RunningRegistry> {
  const auth = opts.auth ?? 'none';
  const dir = await mkdtemp(path.join(os.tmpdir(), 'dfly-registry-'));
  const backendPort = await freePort();
  const creds = auth === 'none' ? undefined : { username: opts.username ?? 'tester', password: opts.password ?? randomBytes(9).toString('base64url') };
  let authBlock = '';
  if (auth === 'htpasswd') {
    const hash = await bcryptHash(creds!.password);
    await writeFile(path.join(dir, 'htpasswd'), `${creds!.username}:${hash}\n`);
    authBlock = `auth:\n  htpasswd:\n    realm: damselfly-test\n    path: ${path.join(dir, 'htpasswd')}\n`;
  }
  await mkdir(path.join(dir, 'data'));
  await writeFile(
    path.join(dir, 'config.yml'),
    `version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: ${path.join(dir, 'data')}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:${backendPort}\n${authBlock}`,
  );
  const logStream = createWriteStream(path.join(dir, 'registry.log'));
  const child: ChildProcess = spawn('docker-registry', ['serve', path.join(dir, 'config.yml')], { stdio: ['ignore', 'pipe', 'pipe'] });
  child.stdout!.pipe(logStream);
  child.stderr!.pipe(logStream);
  const backendUrl = `http://127.0.0.1:${backendPort}`;
  const servers: http.Server[] = [];
  const cleanup = async () => {
    for (const s of servers) {
      s.closeAllConnections();
      await new Promise((r) => s.close(r));
    }
    if (child.exitCode === null) {
      child.kill('SIGTERM');
      await new Promise((r) => {
        const t = setTimeout(() => {
          child.kill('SIGKILL');
          r(undefined);
        }, 3000);
        child.once('exit', () => {
          clearTimeout(t);
          r(undefined);
        });
      });
    }
    logStream.end();
    await rm(dir, { recursive: true, force: true });
  };
  try {
    await waitHttp(`${backendUrl}/v2/`, [200, 401]);
  } catch (e) {
    const log = await readFile(path.join(dir, 'registry.log'), 'utf8').catch(() => '');
    await cleanup();
    throw new Error(`docker-registry failed to start: ${String(e)}\n${log.slice(-2000)}`);
  }

  const state: RunningRegistry = {
    host: '',
    url: '',
    backendUrl,
    creds,
    blobGets: new Map(),
    storageGets: new Map(),
    storageAuthLeaks: 0,
    requests: [],
    tokensIssued: 0,
    cuts: 0,
    totalBlobGets: () => [...state.blobGets.values()].reduce((a, b) => a + b, 0),
    resetCounters: () => {
      state.blobGets.clear();
      state.storageGets.clear();
      state.storageAuthLeaks = 0;
      state.requests.length = 0;
    },
    close: cleanup,
  };

  const agent = new http.Agent({ keepAlive: true, maxSockets: 64 });
  const forward = (req: http.IncomingMessage, res: http.ServerResponse, pathAndQuery: string, headers: http.OutgoingHttpHeaders, onStatus?: (s: number) => void, cutAfter?: number) => {
    const up = http.request(`${backendUrl}${pathAndQuery}`, { method: req.method, headers, agent }, (ures) => {
      onStatus?.(ures.statusCode ?? 502);
      res.writeHead(ures.statusCode ?? 502, ures.headers);
      if (cutAfter === undefined || (ures.statusCode ?? 0) >= 300) {
        ures.pipe(res);
        return;
      }
      let sent = 0;
      ures.on('data', (c: Buffer) => {
        if (sent + c.length < cutAfter) {
          sent += c.length;
          res.write(c);
          return;
        }
        res.write(c.subarray(0, cutAfter - sent));
        state.cuts++;
        ures.destroy();
        res.socket?.destroy();
      });
      ures.on('end', () => res.end());
    });
    up.on('error', () => {
      if (!res.headersSent) res.writeHead(502);
      res.end();
    });
    req.pipe(up);
  };

  // Storage host: what a 307 from the front points at. Serves the blob from the backend (no auth
  // towards it) and records any Authorization header that was leaked to it.
  let storagePort = 0;
  if (opts.redirectBlobs) {
    const storage = http.createServer((req, res) => {
      const u = new URL(req.url ?? '/', 'http://x');
      const m = /^\/storage\/(.+)\/(sha256:[0-9a-f]{64})$/.exec(u.pathname);
      if (req.headers.authorization) state.storageAuthLeaks++;
      if (!m || !u.searchParams.get('X-Amz-Signature')) {
        res.writeHead(403).end('missing signature');
        return;
      }
      if (req.method === 'GET') state.storageGets.set(m[2]!, (state.storageGets.get(m[2]!) ?? 0) + 1);
      const headers: http.OutgoingHttpHeaders = { ...req.headers, host: `127.0.0.1:${backendPort}` };
      delete headers.authorization;
      if (auth === 'htpasswd') headers.authorization = `Basic ${Buffer.from(`${creds!.username}:${creds!.password}`).toString('base64')}`;
      forward(req, res, `/v2/${m[1]}/blobs/${m[2]}`, headers);
    });
    servers.push(storage);
    storagePort = await listen(storage);
  }

  const tokens = new Set<string>();
  const anonymousPull = opts.anonymousPull ?? true;
  let frontPort = 0;
  const basicOk = (h: string | undefined) => !!creds && h === `Basic ${Buffer.from(`${creds.username}:${creds.password}`).toString('base64')}`;

  const front = http.createServer((req, res) => {
    const u = new URL(req.url ?? '/', 'http://x');
    const record = (status: number) => state.requests.push({ method: req.method ?? '', url: req.url ?? '', status, authorization: !!req.headers.authorization, ...(typeof req.headers.traceparent === 'string' ? { traceparent: req.headers.traceparent } : {}) });
    if (auth === 'token' && u.pathname === '/token') {
      // Token endpoint (distribution token spec): GET with Basic or anonymous, or the OAuth2 POST form.
      const finish = (body: string) => {
        const form = new URLSearchParams(body);
        const scopes = [...u.searchParams.getAll('scope'), ...form.getAll('scope')];
        const withCreds = basicOk(req.headers.authorization) || (form.get('username') === creds!.username && form.get('password') === creds!.password);
        const wantsPush = scopes.some((s) => /:[^:]*push/.test(s));
        if (!withCreds && (wantsPush || !anonymousPull)) {
          record(401);
          res.writeHead(401, { 'content-type': 'application/json' }).end('{"errors":[{"code":"UNAUTHORIZED","message":"bad credentials"}]}');
          return;
        }
        const token = randomBytes(18).toString('base64url');
        tokens.add(token);
        state.tokensIssued++;
        record(200);
        res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ token, access_token: token, expires_in: 300, issued_at: new Date().toISOString() }));
      };
      let body = '';
      req.setEncoding('utf8');
      req.on('data', (c: string) => (body += c));
      req.on('end', () => finish(body));
      return;
    }
    const headers: http.OutgoingHttpHeaders = { ...req.headers };
    if (auth === 'token') {
      const m = /^Bearer (.+)$/.exec(req.headers.authorization ?? '');
      if (!m || !tokens.has(m[1]!)) {
        const repo = /^\/v2\/(.+)\/(blobs|manifests|tags)\//.exec(u.pathname)?.[1];
        const scope = repo ? `,scope="repository:${repo}:pull"` : '';
        record(401);
        res
          .writeHead(401, {
            'content-type': 'application/json',
            'www-authenticate': `Bearer realm="http://127.0.0.1:${frontPort}/token",service="damselfly-test"${scope}`,
            'docker-distribution-api-version': 'registry/2.0',
          })
          .end('{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}\n');
        req.resume();
        return;
      }
      delete headers.authorization;
    }
    const blob = BLOB_RE.exec(u.pathname);
    if (blob && req.method === 'GET' && opts.redirectBlobs) {
      if (auth === 'htpasswd' && !basicOk(req.headers.authorization)) {
        // Let the registry produce the real challenge.
        forward(req, res, req.url ?? '/', headers, record);
        return;
      }
      state.blobGets.set(blob[2]!, (state.blobGets.get(blob[2]!) ?? 0) + 1);
      record(307);
      const sig = randomBytes(12).toString('hex');
      res
        .writeHead(307, {
          location: `http://127.0.0.1:${storagePort}/storage/${blob[1]}/${blob[2]}?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Date=${Date.now()}&X-Amz-Expires=600&X-Amz-Signature=${sig}`,
          'content-length': '0',
        })
        .end();
      req.resume();
      return;
    }
    const cut = blob && req.method === 'GET' && state.cutBlob?.digest === blob[2] ? state.cutBlob.afterBytes : undefined;
    forward(
      req,
      res,
      req.url ?? '/',
      headers,
      (status) => {
        record(status);
        if (blob && req.method === 'GET' && status < 400) state.blobGets.set(blob[2]!, (state.blobGets.get(blob[2]!) ?? 0) + 1);
      },
      cut,
    );
  });
  servers.push(front);
  frontPort = await listen(front);
  state.host = `127.0.0.1:${frontPort}`;
  state.url = `http://${state.host}`;
  return state;
}

export interface BuiltImage {
  /** OCI image layout directory. */
  layout: string;
  tag: string;
  /** `oci:<layout>:<tag>` for skopeo. */
  ref: string;
  manifestDigest: string;
  configDigest: string;
  /** Compressed layer digests and sizes, in manifest order. */
  layers: { digest: string; size: number }[];
  /** Every blob (config + layers) with its bytes' sha256, for verification. */
  blobs: string[];
  cleanup(): Promise<void>;
}

/** Deterministic incompressible-ish bytes so layers differ between images but are reproducible. */
export function generatedBytes(size: number, seed: string): Buffer {
  const out = Buffer.allocUnsafe(size);
  let block = createHash('sha256').update(seed).digest();
  for (let off = 0; off < size; off += 32) {
    block.copy(out, off, 0, Math.min(32, size - off));
    block = createHash('sha256').update(block).digest();
  }
  return out;
}

/** Builds a multi-layer OCI image with umoci; each layer holds one generated file of the given size. */
export async function buildImage(opts: { layers: number[]; tag?: string; seed?: string }): Promise<BuiltImage> {
  const tag = opts.tag ?? 'v1';
  const seed = opts.seed ?? randomBytes(8).toString('hex');
  const work = await mkdtemp(path.join(os.tmpdir(), 'dfly-image-'));
  const layout = path.join(work, 'oci');
  await execFileP('umoci', ['init', '--layout', layout]);
  await execFileP('umoci', ['new', '--image', `${layout}:${tag}`]);
  for (const [i, size] of opts.layers.entries()) {
    const rootfs = path.join(work, `rootfs${i}`);
    await mkdir(rootfs, { recursive: true });
    await writeFile(path.join(rootfs, `layer${i}.bin`), generatedBytes(size, `${seed}/${i}`));
    const tar = path.join(work, `layer${i}.tar`);
    await execFileP('tar', ['-C', rootfs, '--owner=0', '--group=0', '--numeric-owner', '-cf', tar, '.']);
    await execFileP('umoci', ['raw', 'add-layer', '--image', `${layout}:${tag}`, tar]);
    await rm(rootfs, { recursive: true });
    await rm(tar);
  }
  await execFileP('umoci', ['config', '--image', `${layout}:${tag}`, '--config.cmd', '/bin/true']);
  const index = JSON.parse(await readFile(path.join(layout, 'index.json'), 'utf8')) as { manifests: { digest: string; annotations?: Record<string, string> }[] };
  const desc = index.manifests.find((m) => m.annotations?.['org.opencontainers.image.ref.name'] === tag)!;
  const manifest = JSON.parse(await readFile(path.join(layout, 'blobs', 'sha256', desc.digest.slice(7)), 'utf8')) as {
    config: { digest: string };
    layers: { digest: string; size: number }[];
  };
  return {
    layout,
    tag,
    ref: `oci:${layout}:${tag}`,
    manifestDigest: desc.digest,
    configDigest: manifest.config.digest,
    layers: manifest.layers.map((l) => ({ digest: l.digest, size: l.size })),
    blobs: [manifest.config.digest, ...manifest.layers.map((l) => l.digest)],
    cleanup: () => rm(work, { recursive: true, force: true }),
  };
}

/** Pushes a built image with skopeo (plain HTTP registry); returns the manifest digest the registry stored. */
export async function pushImage(image: BuiltImage, dest: string, opts: { creds?: { username: string; password: string } } = {}): Promise<string> {
  const digestFile = path.join(path.dirname(image.layout), `pushed-${randomBytes(4).toString('hex')}.digest`);
  const args = ['copy', '--insecure-policy', '--dest-tls-verify=false', '--preserve-digests', '--digestfile', digestFile];
  if (opts.creds) args.push('--dest-creds', `${opts.creds.username}:${opts.creds.password}`);
  args.push(image.ref, `docker://${dest}`);
  try {
    await execFileP('skopeo', args, { timeout: 120_000 });
  } catch (e) {
    const err = e as { stderr?: string };
    throw new Error(`skopeo push to ${dest} failed: ${err.stderr ?? String(e)}`);
  }
  return (await readFile(digestFile, 'utf8')).trim();
}

/** sha256 of a file, 'sha256:<hex>'. */
export async function fileDigest(file: string): Promise<string> {
  return `sha256:${createHash('sha256').update(await readFile(file)).digest('hex')}`;
}
