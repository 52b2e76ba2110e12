/** Prometheus metrics with Dragonfly's manager names (research/dragonfly.md §5), on a private registry. */
import { Counter, Histogram, Registry } from 'prom-client';
import { METRIC_PREFIX, collectRuntimeMetrics } from '../../adapters/metrics.js';

export interface ManagerMetrics {
  registry: Registry;
  requests: Counter<'code' | 'method' | 'url'>;
  requestDuration: Histogram<'code' | 'method' | 'url'>;
  createJob: Counter<'name'>;
  createJobSuccess: Counter<'name'>;
  search: Counter;
  searchFailure: Counter;
  jobReports: Counter<'state'>;
}

/** A fresh registry; `defaults` adds the process and Node runtime metrics (not in tests, where many apps share a process). */
export function createManagerMetrics(opts: { defaults?: boolean } = {}): ManagerMetrics {
  const registry = new Registry();
  if (opts.defaults) collectRuntimeMetrics(registry, METRIC_PREFIX.manager);
  const registers = [registry];
  const m: ManagerMetrics = {
    registry,
    requests: new Counter({ name: 'dragonfly_manager_requests_total', help: 'HTTP requests', labelNames: ['code', 'method', 'url'], registers }),
    requestDuration: new Histogram({
      name: 'dragonfly_manager_request_duration_seconds',
      help: 'HTTP request latency',
      labelNames: ['code', 'method', 'url'],
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
      registers,
    }),
    createJob: new Counter({ name: 'dragonfly_manager_create_job_total', help: 'Job creations attempted', labelNames: ['name'], registers }),
    createJobSuccess: new Counter({ name: 'dragonfly_manager_create_job_success_total', help: 'Jobs created', labelNames: ['name'], registers }),
    search: new Counter({ name: 'dragonfly_manager_search_scheduler_cluster_total', help: 'Scheduler searches', registers }),
    searchFailure: new Counter({ name: 'dragonfly_manager_search_scheduler_cluster_failure_total', help: 'Scheduler searches that found none', registers }),
    jobReports: new Counter({ name: 'dragonfly_manager_job_report_total', help: 'Job reports from schedulers, by the state reported', labelNames: ['state'], registers }),
  };
  // From 0, so that increase() counts the first job of each type and the first report of each state.
  for (const state of ['SUCCESS', 'FAILURE']) m.jobReports.inc({ state }, 0);
  for (const name of ['preheat', 'get_task', 'delete_task']) {
    m.createJob.inc({ name }, 0);
    m.createJobSuccess.inc({ name }, 0);
  }
  return m;
}
