import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { collectRuntimeMetrics } from './metrics.js';

describe('collectRuntimeMetrics', () => {
  it('puts CPU, memory, event-loop lag and GC under the role prefix, nothing unprefixed', async () => {
    const registry = new Registry();
    collectRuntimeMetrics(registry, 'dragonfly_scheduler_');
    const names = (await registry.getMetricsAsJSON()).map((m) => m.name);
    for (const n of ['process_cpu_seconds_total', 'process_resident_memory_bytes', 'nodejs_eventloop_lag_p99_seconds', 'nodejs_gc_duration_seconds', 'nodejs_heap_size_used_bytes']) {
      expect(names).toContain('dragonfly_scheduler_' + n);
    }
    expect(names.filter((n) => !n.startsWith('dragonfly_scheduler_'))).toEqual([]);
  });
});
