import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { collectRuntimeMetrics, taskSizeLevel } from './metrics.js';

describe('taskSizeLevel', () => {
  it("follows Dragonfly's client levels at every boundary", () => {
    const MiB = 1024 * 1024;
    const GiB = 1024 * MiB;
    expect(taskSizeLevel(-1)).toBe('0');
    expect(taskSizeLevel(0)).toBe('0');
    expect(taskSizeLevel(NaN)).toBe('0');
    expect(taskSizeLevel(1)).toBe('1');
    expect(taskSizeLevel(MiB - 1)).toBe('1');
    expect(taskSizeLevel(MiB)).toBe('2');
    expect(taskSizeLevel(4 * MiB - 1)).toBe('2');
    expect(taskSizeLevel(4 * MiB)).toBe('3');
    expect(taskSizeLevel(16 * MiB)).toBe('5');
    expect(taskSizeLevel(512 * MiB)).toBe('10');
    expect(taskSizeLevel(GiB - 1)).toBe('10');
    expect(taskSizeLevel(GiB)).toBe('11');
    expect(taskSizeLevel(4 * GiB)).toBe('12');
    expect(taskSizeLevel(1024 * GiB - 1)).toBe('19');
    expect(taskSizeLevel(1024 * GiB)).toBe('20');
    expect(taskSizeLevel(Number.MAX_SAFE_INTEGER)).toBe('20');
  });
});

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
