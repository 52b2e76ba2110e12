/**
 * Configuration that points container clients at the agent's proxy (research/formats.md §1–3):
 * containerd hosts.toml (+ config_path snippets for 1.6/1.7 and 2.x), nydusd backend JSON (mirror
 * mode for nydus <= 2.3.4, proxy mode for 2.3.5+), containers registries.conf (podman, skopeo,
 * CRI-O) and docker (daemon.json registry-mirrors for Docker Hub, systemd HTTP(S)_PROXY drop-in).
 */
import { InvalidError } from '../../adapters/errors.js';
import { registryOrigin, upstreamPathSegment } from './upstream.js';

export type ClientKind = 'containerd' | 'nydusd' | 'podman' | 'docker';
export const CLIENT_KINDS: ClientKind[] = ['containerd', 'nydusd', 'podman', 'docker'];

export interface ClientConfigOptions {
  /** The agent's proxy URL, e.g. http://127.0.0.1:4001. */
  mirror: string;
  /** Upstream registries (host[:port] or URL); Docker Hub when empty. */
  registries: string[];
  /** containerd: the directory containerd will read (config_path); default /etc/containerd/certs.d. */
  configPath?: string;
  /** docker: PEM of the proxy CA, written where dockerd trusts it per registry host. */
  caPem?: string;
  /**
   * The agent's proxy.basicAuth. containerd and nydusd (mirror mode) send it as a
   * `Proxy-Authorization` header; nydusd (proxy mode), docker and podman through the userinfo of
   * the proxy URL (HTTP(S)_PROXY), since their mirror settings cannot carry a header.
   */
  proxyAuth?: { username: string; password: string };
}

/** One generated file: a path relative to the output directory and its content. */
export interface GeneratedFile {
  path: string;
  content: string;
  /** What the file is for, printed above it when not writing to a directory. */
  note: string;
}

const DOCKER_HUB_HOSTS = new Set(['docker.io', 'index.docker.io', 'registry-1.docker.io']);

/** A registry normalised: the upstream URL clients/agent use and the namespace host in references. */
export interface RegistryRef {
  /** Upstream origin for X-Dragonfly-Registry / server (Docker Hub: https://index.docker.io). */
  upstream: string;
  /** Host (and port) as written in image references: docker.io, 127.0.0.1:5000, ghcr.io. */
  namespace: string;
  dockerHub: boolean;
}

/** Normalises a registry argument; throws InvalidError on a malformed one. */
export function registryRef(value: string): RegistryRef {
  const u = registryOrigin(value);
  const dockerHub = DOCKER_HUB_HOSTS.has(u.hostname);
  if (dockerHub) return { upstream: 'https://index.docker.io', namespace: 'docker.io', dockerHub };
  return { upstream: u.origin, namespace: u.host, dockerHub };
}

function mirrorUrl(mirror: string): URL {
  let u: URL;
  try {
    u = new URL(mirror);
  } catch {
    throw new InvalidError(`--mirror must be a URL like http://127.0.0.1:4001, got ${JSON.stringify(mirror)}`);
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new InvalidError('--mirror must be http(s)');
  return new URL(u.origin);
}

const q = (s: string) => JSON.stringify(s);

function proxyAuthorization(opts: ClientConfigOptions): string | undefined {
  const a = opts.proxyAuth;
  return a ? `Basic ${Buffer.from(`${a.username}:${a.password}`).toString('base64')}` : undefined;
}

/** The proxy URL with the proxy credentials as userinfo (percent-encoded), for HTTP(S)_PROXY. */
function proxyUrlWithAuth(m: URL, opts: ClientConfigOptions): string {
  if (!opts.proxyAuth) return m.origin;
  return `${m.protocol}//${encodeURIComponent(opts.proxyAuth.username)}:${encodeURIComponent(opts.proxyAuth.password)}@${m.host}`;
}

/** Parses `USER:PASSWORD` (the password may contain ":"); throws InvalidError naming `what`. */
export function parseProxyAuth(value: string, what = '--proxy-auth'): { username: string; password: string } {
  const i = value.indexOf(':');
  if (i <= 0 || i === value.length - 1) throw new InvalidError(`${what} must be USER:PASSWORD (both non-empty)`);
  return { username: value.slice(0, i), password: value.slice(i + 1) };
}

function refs(opts: ClientConfigOptions): RegistryRef[] {
  const list = (opts.registries.length ? opts.registries : ['https://index.docker.io']).map(registryRef);
  const seen = new Set<string>();
  return list.filter((r) => !seen.has(r.namespace) && seen.add(r.namespace));
}

/** containerd: `<ns>/hosts.toml` per registry, `_default/hosts.toml`, and config_path snippets. */
export function containerdConfig(opts: ClientConfigOptions): GeneratedFile[] {
  const mirror = mirrorUrl(opts.mirror).origin;
  const configPath = opts.configPath ?? '/etc/containerd/certs.d';
  const auth = proxyAuthorization(opts);
  const authLine = auth ? `    Proxy-Authorization = ${q(auth)}\n` : '';
  const files: GeneratedFile[] = refs(opts).map((r) => ({
    path: `${r.namespace}/hosts.toml`,
    note: `containerd hosts.toml for ${r.namespace}: the agent first, the registry itself last (containerd appends server)`,
    content:
      `server = ${q(r.upstream)}\n\n` +
      `[host.${q(mirror)}]\n` +
      `  capabilities = ["pull", "resolve"]\n\n` +
      `  [host.${q(mirror)}.header]\n` +
      `    X-Dragonfly-Registry = ${q(r.upstream)}\n` +
      authLine,
  }));
  files.push({
    path: '_default/hosts.toml',
    note: 'containerd catch-all: any other registry goes through the agent, which takes the upstream from ?ns=',
    content: `[host.${q(mirror)}]\n  capabilities = ["pull", "resolve"]\n` + (auth ? `\n  [host.${q(mirror)}.header]\n${authLine}` : ''),
  });
  files.push({
    path: 'containerd-1.x-config.toml',
    note: 'merge into /etc/containerd/config.toml on containerd 1.6/1.7, then restart containerd',
    content: `version = 2\n\n[plugins."io.containerd.grpc.v1.cri".registry]\n  config_path = ${q(configPath)}\n`,
  });
  files.push({
    path: 'containerd-2.x-config.toml',
    note: 'merge into /etc/containerd/config.toml on containerd 2.x, then restart containerd',
    content: `version = 3\n\n[plugins."io.containerd.cri.v1.images".registry]\n  config_path = ${q(configPath)}\n`,
  });
  return files;
}

/** nydusd: backend JSON in mirror mode (nydus <= 2.3.4) and proxy mode (2.3.5+), per registry. */
export function nydusdConfig(opts: ClientConfigOptions): GeneratedFile[] {
  const m = mirrorUrl(opts.mirror);
  const mirror = m.origin;
  const auth = proxyAuthorization(opts);
  const files: GeneratedFile[] = [];
  for (const r of refs(opts)) {
    const up = new URL(r.upstream);
    const base = { scheme: up.protocol.slice(0, -1), host: up.host, repo: '', skip_verify: false, timeout: 5, connect_timeout: 5, retry_limit: 2 };
    const device = (extra: Record<string, unknown>) => ({
      device: { backend: { type: 'registry', config: { ...base, ...extra } }, cache: { type: 'blobcache', config: { work_dir: '/var/lib/nydus/cache' } } },
      mode: 'direct',
      digest_validate: false,
      iostats_files: false,
      enable_xattr: true,
      fs_prefetch: { enable: true, threads_count: 8, merging_size: 1048576, prefetch_all: true },
    });
    const slug = r.namespace.replace(/[^A-Za-z0-9.-]/g, '_');
    files.push({
      path: `nydusd-mirror-${slug}.json`,
      note: `nydusd <= 2.3.4 (mirrors[]): requests for ${r.namespace} go to the agent with X-Dragonfly-Registry`,
      content: JSON.stringify(
        device({ mirrors: [{ host: mirror, headers: { 'X-Dragonfly-Registry': r.upstream, ...(auth ? { 'Proxy-Authorization': auth } : {}) }, ping_url: `${mirror}/healthy`, health_check_interval: 5, failure_limit: 5 }] }),
        null,
        2,
      ) + '\n',
    });
    files.push({
      path: `nydusd-proxy-${slug}.json`,
      note: `nydusd >= 2.3.5 (proxy): the agent as HTTP proxy for ${r.namespace}, falling back to the registry`,
      content: JSON.stringify(device({ proxy: { url: proxyUrlWithAuth(m, opts), ping_url: `${mirror}/healthy`, fallback: true, check_interval: 5, use_http: false } }), null, 2) + '\n',
    });
  }
  return files;
}

/**
 * podman / skopeo / CRI-O registries.conf. containers/image sends no `ns` and no headers to a
 * mirror, so each mirror location carries the upstream in a repository-path prefix the agent
 * strips (UPSTREAM_PATH_PREFIX): any number of registries through one agent.
 */
export function podmanConfig(opts: ClientConfigOptions): GeneratedFile[] {
  const m = mirrorUrl(opts.mirror);
  const blocks = refs(opts).map((r) => {
    const insecure = r.upstream.startsWith('http:');
    return (
      `[[registry]]\nprefix = ${q(r.namespace)}\nlocation = ${q(r.namespace)}\n${insecure ? 'insecure = true\n' : ''}\n` +
      `[[registry.mirror]]\nlocation = ${q(`${m.host}/${upstreamPathSegment(r.namespace)}`)}\ninsecure = ${m.protocol === 'http:'}\n`
    );
  });
  const files: GeneratedFile[] = [
    {
      path: 'registries.conf',
      note: 'containers registries.conf (podman, skopeo --registries-conf, CRI-O): /etc/containers/registries.conf or a registries.conf.d drop-in; the mirror path names the upstream',
      content: blocks.join('\n'),
    },
  ];
  if (opts.proxyAuth) {
    // registries.conf mirrors cannot send a Proxy-Authorization header: with proxy credentials the
    // mirror entries are answered 407, and podman uses the agent as its HTTP(S) proxy instead.
    files[0]!.content = `# The agent requires proxy credentials, which a registries.conf mirror cannot send: use\n# containers-proxy.env (the agent as HTTP(S) proxy) instead of these mirror entries.\n`;
    files.push({
      path: 'containers-proxy.env',
      note: 'environment for podman/skopeo/CRI-O (e.g. systemd EnvironmentFile=, or export before podman pull): the agent as HTTP(S) proxy with its credentials; HTTPS registries are intercepted when the agent has proxy.server.caCert/caKey',
      content: `HTTP_PROXY=${proxyUrlWithAuth(m, opts)}\nHTTPS_PROXY=${proxyUrlWithAuth(m, opts)}\nNO_PROXY=localhost,127.0.0.1,::1\n`,
    });
  }
  return files;
}

/** docker: daemon.json registry-mirrors (Docker Hub only) and the HTTP(S)_PROXY systemd drop-in. */
export function dockerConfig(opts: ClientConfigOptions): GeneratedFile[] {
  const m = mirrorUrl(opts.mirror);
  const files: GeneratedFile[] = [];
  const all = refs(opts);
  // daemon.json registry-mirrors cannot carry proxy credentials: with them, only the proxy drop-in.
  if (all.some((r) => r.dockerHub) && !opts.proxyAuth) {
    files.push({
      path: 'daemon.json',
      note: 'merge into /etc/docker/daemon.json: registry-mirrors applies to Docker Hub only',
      content: JSON.stringify({ 'registry-mirrors': [m.origin] }, null, 2) + '\n',
    });
  }
  files.push({
    path: 'docker.service.d/http-proxy.conf',
    note: 'systemd drop-in /etc/systemd/system/docker.service.d/http-proxy.conf (then daemon-reload and restart docker); HTTPS registries are intercepted when the agent has proxy.server.caCert/caKey',
    content: `[Service]\nEnvironment="HTTP_PROXY=${proxyUrlWithAuth(m, opts)}"\nEnvironment="HTTPS_PROXY=${proxyUrlWithAuth(m, opts)}"\nEnvironment="NO_PROXY=localhost,127.0.0.1,::1"\n`,
  });
  if (opts.caPem) {
    for (const r of all) {
      const host = r.dockerHub ? 'registry-1.docker.io' : r.namespace;
      files.push({ path: `certs.d/${host}/ca.crt`, note: `/etc/docker/certs.d/${host}/ca.crt: dockerd trusts the agent's CA for ${host}`, content: opts.caPem });
    }
  }
  return files;
}

/** Generates the files for one client kind. Throws InvalidError on bad input. */
export function generateClientConfig(kind: ClientKind, opts: ClientConfigOptions): GeneratedFile[] {
  switch (kind) {
    case 'containerd':
      return containerdConfig(opts);
    case 'nydusd':
      return nydusdConfig(opts);
    case 'podman':
      return podmanConfig(opts);
    case 'docker':
      return dockerConfig(opts);
  }
}
