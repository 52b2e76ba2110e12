/**
 * Which scheduler cluster serves a host: Dragonfly's searcher (research/dragonfly.md §2.4).
 *
 *   score = W_CIDR·cidr + W_HOSTNAME·hostname + W_IDC·idc + W_LOCATION·location + W_DEFAULT·isDefault
 *
 * cidr, hostname, idc and isDefault are 0 or 1; location is the number of leading `|`-separated
 * elements that match, over 5 (1 for an exact match).
 */
import { BlockList, isIPv4, isIPv6 } from 'node:net';
import { RE2JS } from 're2js';
import type { ClusterRecord, ClusterScopes } from './models.js';

export const W_CIDR = 0.3;
export const W_HOSTNAME = 0.3;
export const W_IDC = 0.25;
export const W_LOCATION = 0.14;
export const W_DEFAULT = 0.01;
const MAX_LOCATION_ELEMENTS = 5;

export interface HostConditions {
  ip?: string;
  hostname?: string;
  idc?: string;
  location?: string;
}

function unmap(ip: string): string {
  const m = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(ip);
  return m ? m[1] : ip;
}

function cidrScore(scopes: ClusterScopes, ip?: string): number {
  if (!ip) return 0;
  const addr = unmap(ip);
  const family = isIPv4(addr) ? 'ipv4' : isIPv6(addr) ? 'ipv6' : undefined;
  if (!family) return 0;
  for (const cidr of scopes.cidrs) {
    const [net, bits] = cidr.split('/');
    const list = new BlockList();
    try {
      const netFamily = isIPv4(net) ? 'ipv4' : 'ipv6';
      list.addSubnet(net, Number(bits ?? (netFamily === 'ipv4' ? 32 : 128)), netFamily);
      if (list.check(addr, family)) return 1;
    } catch {
      // An unparsable CIDR in a stored scope matches nothing rather than failing the search.
    }
  }
  return 0;
}

// Compiled patterns, bounded: the same few scopes are matched on every search.
const compiled = new Map<string, RE2JS | null>();
const MAX_COMPILED = 10_000;

/**
 * A user's hostname pattern compiled by RE2JS, whose matching is linear in the input: `^(a+)+$`
 * against 28 characters took V8's backtracking engine 1.8 s of the event loop. Patterns RE2 cannot
 * express (backreferences, lookaround) are refused at creation; a stored one matches nothing.
 */
export function compileHostnamePattern(pattern: string): RE2JS | null {
  let re = compiled.get(pattern);
  if (re === undefined) {
    try {
      re = RE2JS.compile(pattern);
    } catch {
      re = null;
    }
    if (compiled.size >= MAX_COMPILED) compiled.clear();
    compiled.set(pattern, re);
  }
  return re;
}

function hostnameScore(scopes: ClusterScopes, hostname?: string): number {
  if (!hostname) return 0;
  for (const pattern of scopes.hostnames) {
    // find(), not matches(): JavaScript's test() semantics (unanchored unless the pattern anchors).
    if (compileHostnamePattern(pattern)?.matcher(hostname).find()) return 1;
  }
  return 0;
}

function idcScore(scopes: ClusterScopes, idc?: string): number {
  if (!idc || !scopes.idc) return 0;
  const want = idc.toLowerCase();
  return scopes.idc.split('|').some((e) => e.toLowerCase() === want) ? 1 : 0;
}

function locationScore(scopes: ClusterScopes, location?: string): number {
  if (!location || !scopes.location) return 0;
  if (location === scopes.location) return 1;
  const a = location.split('|');
  const b = scopes.location.split('|');
  let n = 0;
  for (let i = 0; i < Math.min(a.length, b.length, MAX_LOCATION_ELEMENTS); i++) {
    if (a[i] !== b[i]) break;
    n++;
  }
  return n / MAX_LOCATION_ELEMENTS;
}

/** The cluster's score for a host, per the formula above. */
export function scoreCluster(cluster: ClusterRecord, host: HostConditions): number {
  const s = cluster.scopes;
  return (
    W_CIDR * cidrScore(s, host.ip) +
    W_HOSTNAME * hostnameScore(s, host.hostname) +
    W_IDC * idcScore(s, host.idc) +
    W_LOCATION * locationScore(s, host.location) +
    W_DEFAULT * (cluster.is_default ? 1 : 0)
  );
}

/** Clusters best first (ties: lower id first, so answers are stable). */
export function rankClusters(clusters: ClusterRecord[], host: HostConditions): ClusterRecord[] {
  return clusters
    .map((c) => ({ c, score: scoreCluster(c, host) }))
    .sort((x, y) => y.score - x.score || x.c.id - y.c.id)
    .map((x) => x.c);
}
