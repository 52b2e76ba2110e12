/**
 * Proxy metrics, named after Dragonfly's client metrics (`dragonfly_client_proxy_*`) so existing
 * dashboards keep working; the byte counter splits P2P from direct traffic.
 */
import { Counter, Registry } from 'prom-client';

export type ProxyRoute = 'p2p' | 'direct' | 'connect' | 'tunnel' | 'health';
export type ProxyResult = 'ok' | 'fallback' | 'source_error' | 'error' | 'aborted' | 'unauthorized' | 'denied';

export interface ProxyMetrics {
  requests: Counter<'route' | 'result'>;
  failures: Counter<'route'>;
  viaDfdaemon: Counter<string>;
  bytes: Counter<'source'>;
  fallbacks: Counter<'reason'>;
}

function counter<T extends string>(registry: Registry, name: string, help: string, labelNames: T[]): Counter<T> {
  const existing = registry.getSingleMetric(name);
  if (existing) return existing as Counter<T>;
  return new Counter({ name, help, labelNames, registers: [registry] });
}

/** Registers (or reuses, when already registered on this registry) the proxy counters. */
export function proxyMetrics(registry: Registry): ProxyMetrics {
  return {
    requests: counter(registry, 'dragonfly_client_proxy_request_total', 'Proxy requests by route (p2p, direct, connect, tunnel) and result.', ['route', 'result']),
    failures: counter(registry, 'dragonfly_client_proxy_request_failure_total', 'Proxy requests that failed (client saw an error or a broken body).', ['route']),
    viaDfdaemon: counter(registry, 'dragonfly_client_proxy_request_via_dfdaemon_total', 'Proxy requests served through the P2P task manager.', []),
    bytes: counter(registry, 'dragonfly_client_proxy_traffic_bytes_total', 'Body bytes sent to proxy clients, by where they came from (p2p or direct).', ['source']),
    fallbacks: counter(registry, 'dragonfly_client_proxy_fallback_total', 'P2P requests answered by a direct upstream fetch instead, by reason.', ['reason']),
  };
}
