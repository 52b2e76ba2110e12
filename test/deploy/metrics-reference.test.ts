/**
 * infra/docs/metrics.md is generated from the roles' registries; this fails when it is stale (a metric
 * added, renamed, relabelled or re-described) and `DAMSELFLY_UPDATE=1` rewrites it. It also holds the
 * naming scheme: every metric of a role carries that role's Dragonfly prefix, nothing else.
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { METRICS_FILE, metricRows, renderMetricsReference, roleRegistries } from '../../infra/docs/render-metrics-reference.js';

const text = renderMetricsReference();
if (process.env.DAMSELFLY_UPDATE === '1') writeFileSync(METRICS_FILE, text);

describe('metrics reference', () => {
  it('is up to date with the registries', () => {
    expect(existsSync(METRICS_FILE)).toBe(true);
    expect(readFileSync(METRICS_FILE, 'utf8'), 'stale: run DAMSELFLY_UPDATE=1 npx vitest run test/deploy/metrics-reference.test.ts').toBe(text);
  });

  it("names every metric of a role with that role's Dragonfly prefix, and describes it", () => {
    for (const role of roleRegistries()) {
      const rows = metricRows(role.registry);
      expect(rows.length).toBeGreaterThan(10);
      for (const r of rows) {
        expect(r.name, `${role.title}: ${r.name}`).toMatch(new RegExp(`^${role.prefix}[a-z0-9_]+$`));
        expect(r.help.trim().length, `${r.name} has no help text`).toBeGreaterThan(3);
        expect(text).toContain(`| \`${r.name}\` |`);
      }
      // Process and Node runtime metrics in every role.
      for (const n of ['process_cpu_seconds_total', 'process_resident_memory_bytes', 'nodejs_eventloop_lag_p99_seconds', 'nodejs_gc_duration_seconds']) {
        expect(rows.map((r) => r.name)).toContain(role.prefix + n);
      }
    }
  });

  it("uses Dragonfly's label names where Dragonfly has the metric", () => {
    expect(text).toMatch(/\| `dragonfly_scheduler_download_piece_finished_total` \| counter \| `traffic_type`, `task_type`, `host_type` \|/);
    expect(text).toMatch(/\| `dragonfly_client_download_task_duration_milliseconds` \| histogram \| `task_type`, `task_size_level` \|/);
    expect(text).toMatch(/\| `dragonfly_scheduler_download_peer_duration_milliseconds` \| summary \| `task_size_level` \|/);
    expect(text).toMatch(/\| `dragonfly_client_download_piece_duration_milliseconds` \| histogram \| `type` \|/);
  });
});
