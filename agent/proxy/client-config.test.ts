/** Each generated file is parsed back (TOML / JSON) and the fields the client reads are checked. */
import { describe, expect, it } from 'vitest';
import { parse as parseToml } from 'smol-toml';
import { generateClientConfig, parseProxyAuth } from './client-config.js';

const mirror = 'http://127.0.0.1:4001';
const byPath = (files: { path: string; content: string }[]) => Object.fromEntries(files.map((f) => [f.path, f.content]));

describe('client configuration generators', () => {
  it('containerd: hosts.toml per registry with the mirror first, header and server; _default; config_path snippets', () => {
    const f = byPath(generateClientConfig('containerd', { mirror, registries: ['docker.io', '127.0.0.1:5000'], configPath: '/etc/containerd/certs.d' }));
    const hub = parseToml(f['docker.io/hosts.toml']!) as any;
    expect(hub.server).toBe('https://index.docker.io');
    expect(Object.keys(hub.host)).toEqual([mirror]);
    expect(hub.host[mirror].capabilities).toEqual(['pull', 'resolve']);
    expect(hub.host[mirror].header['X-Dragonfly-Registry']).toBe('https://index.docker.io');
    expect(hub.host[mirror].skip_verify).toBeUndefined();
    const local = parseToml(f['127.0.0.1:5000/hosts.toml']!) as any;
    expect(local.server).toBe('http://127.0.0.1:5000');
    expect(local.host[mirror].header['X-Dragonfly-Registry']).toBe('http://127.0.0.1:5000');
    const def = parseToml(f['_default/hosts.toml']!) as any;
    expect(def.server).toBeUndefined();
    expect(def.host[mirror].capabilities).toEqual(['pull', 'resolve']);
    const v2 = parseToml(f['containerd-1.x-config.toml']!) as any;
    expect(v2.version).toBe(2);
    expect(v2.plugins['io.containerd.grpc.v1.cri'].registry.config_path).toBe('/etc/containerd/certs.d');
    const v3 = parseToml(f['containerd-2.x-config.toml']!) as any;
    expect(v3.version).toBe(3);
    expect(v3.plugins['io.containerd.cri.v1.images'].registry.config_path).toBe('/etc/containerd/certs.d');
  });
  it('nydusd: mirrors[] with X-Dragonfly-Registry (<= 2.3.4) and proxy (2.3.5+), never both', () => {
    const f = byPath(generateClientConfig('nydusd', { mirror, registries: [] }));
    const m = JSON.parse(f['nydusd-mirror-docker.io.json']!);
    const cfg = m.device.backend.config;
    expect(m.device.backend.type).toBe('registry');
    expect(cfg.host).toBe('index.docker.io');
    expect(cfg.scheme).toBe('https');
    expect(cfg.mirrors[0].host).toBe(mirror);
    expect(cfg.mirrors[0].headers['X-Dragonfly-Registry']).toBe('https://index.docker.io');
    expect(cfg.proxy).toBeUndefined();
    const p = JSON.parse(f['nydusd-proxy-docker.io.json']!).device.backend.config;
    expect(p.proxy).toMatchObject({ url: mirror, fallback: true });
    expect(p.mirrors).toBeUndefined();
  });
  it('podman/skopeo/CRI-O: [[registry]] with [[registry.mirror]]', () => {
    const f = byPath(generateClientConfig('podman', { mirror, registries: ['127.0.0.1:5000'] }));
    const c = parseToml(f['registries.conf']!) as any;
    expect(c.registry).toHaveLength(1);
    expect(c.registry[0]).toMatchObject({ prefix: '127.0.0.1:5000', location: '127.0.0.1:5000', insecure: true });
    expect(c.registry[0].mirror).toEqual([{ location: '127.0.0.1:4001/damselfly-upstream/127.0.0.1_5000', insecure: true }]);
    const hub = parseToml(byPath(generateClientConfig('podman', { mirror, registries: [] }))['registries.conf']!) as any;
    expect(hub.registry[0]).toMatchObject({ prefix: 'docker.io', location: 'docker.io' });
    expect(hub.registry[0].insecure).toBeUndefined();
    expect(hub.registry[0].mirror[0].location).toBe('127.0.0.1:4001/damselfly-upstream/docker.io');
  });
  it('docker: registry-mirrors only for Docker Hub, the proxy drop-in, and the CA per host', () => {
    const f = byPath(generateClientConfig('docker', { mirror, registries: ['docker.io', 'ghcr.io'], caPem: 'PEM' }));
    expect(JSON.parse(f['daemon.json']!)).toEqual({ 'registry-mirrors': [mirror] });
    expect(f['docker.service.d/http-proxy.conf']).toContain(`Environment="HTTPS_PROXY=${mirror}"`);
    expect(f['docker.service.d/http-proxy.conf']).toMatch(/^\[Service\]\n/);
    expect(f['certs.d/registry-1.docker.io/ca.crt']).toBe('PEM');
    expect(f['certs.d/ghcr.io/ca.crt']).toBe('PEM');
    const noHub = byPath(generateClientConfig('docker', { mirror, registries: ['ghcr.io'] }));
    expect(noHub['daemon.json']).toBeUndefined();
  });
  it('rejects a mirror that is not a URL', () => {
    expect(() => generateClientConfig('containerd', { mirror: '127.0.0.1:4001', registries: [] })).toThrow(/--mirror/);
  });
  describe('with proxy.basicAuth (--proxy-auth)', () => {
    const proxyAuth = { username: 'pull er', password: 'p@ss:w/rd' };
    const expected = `Basic ${Buffer.from('pull er:p@ss:w/rd').toString('base64')}`;
    const proxyUser = (u: string) => {
      const url = new URL(u);
      return [decodeURIComponent(url.username), decodeURIComponent(url.password), url.host];
    };
    it('containerd: every mirror host (also _default) sends Proxy-Authorization', () => {
      const f = byPath(generateClientConfig('containerd', { mirror, registries: ['docker.io'], proxyAuth }));
      expect((parseToml(f['docker.io/hosts.toml']!) as any).host[mirror].header['Proxy-Authorization']).toBe(expected);
      expect((parseToml(f['_default/hosts.toml']!) as any).host[mirror].header['Proxy-Authorization']).toBe(expected);
    });
    it('nydusd: the mirror sends the header, proxy mode carries the credentials in the URL', () => {
      const f = byPath(generateClientConfig('nydusd', { mirror, registries: [], proxyAuth }));
      expect(JSON.parse(f['nydusd-mirror-docker.io.json']!).device.backend.config.mirrors[0].headers['Proxy-Authorization']).toBe(expected);
      expect(proxyUser(JSON.parse(f['nydusd-proxy-docker.io.json']!).device.backend.config.proxy.url)).toEqual(['pull er', 'p@ss:w/rd', '127.0.0.1:4001']);
    });
    it('docker: no registry-mirrors (they cannot authenticate), HTTP(S)_PROXY with the credentials', () => {
      const f = byPath(generateClientConfig('docker', { mirror, registries: ['docker.io'], proxyAuth }));
      expect(f['daemon.json']).toBeUndefined();
      const m = /HTTPS_PROXY=([^"]+)"/.exec(f['docker.service.d/http-proxy.conf']!)!;
      expect(proxyUser(m[1]!)).toEqual(['pull er', 'p@ss:w/rd', '127.0.0.1:4001']);
    });
    it('podman: no mirror entries, a proxy environment file with the credentials', () => {
      const f = byPath(generateClientConfig('podman', { mirror, registries: ['ghcr.io'], proxyAuth }));
      expect(f['registries.conf']).not.toContain('[[registry.mirror]]');
      const m = /^HTTPS_PROXY=(.+)$/m.exec(f['containers-proxy.env']!)!;
      expect(proxyUser(m[1]!)).toEqual(['pull er', 'p@ss:w/rd', '127.0.0.1:4001']);
    });
    it('parseProxyAuth: USER:PASSWORD, the password may hold ":"; anything else names the option', () => {
      expect(parseProxyAuth('a:b:c')).toEqual({ username: 'a', password: 'b:c' });
      for (const bad of ['nocolon', ':pw', 'user:']) expect(() => parseProxyAuth(bad)).toThrow(/--proxy-auth must be USER:PASSWORD/);
    });
  });
});
