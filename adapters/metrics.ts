/**
 * What every role's Prometheus registry shares: the process/Node runtime metrics (Dragonfly's task
 * size levels are protocol: scheduler/protocol/task-size.ts). The metric names themselves live beside each role (agent/metrics.ts,
 * scheduler/metrics.ts, control/manager/metrics.ts); all follow Dragonfly's scheme
 * (`dragonfly_<role>_*`), including the runtime ones, so one prefix selects one role.
 */
import { collectDefaultMetrics, type Registry } from 'prom-client';

/** The prefix of each role's metrics, as in Dragonfly (the agent and seed peer are its "client"). */
export const METRIC_PREFIX = {
  manager: 'dragonfly_manager_',
  scheduler: 'dragonfly_scheduler_',
  client: 'dragonfly_client_',
} as const;

/**
 * Process and Node runtime metrics (CPU, resident memory, heap, event-loop lag, GC pauses, handles)
 * on `registry`, under the role's prefix: `dragonfly_scheduler_process_cpu_seconds_total`,
 * `dragonfly_client_nodejs_eventloop_lag_p99_seconds`, `dragonfly_manager_nodejs_gc_duration_seconds`.
 * Once per process and registry: each call starts its own event-loop and GC observers, so tests that
 * run many roles in one process leave it off.
 */
export function collectRuntimeMetrics(registry: Registry, prefix: string): void {
  collectDefaultMetrics({ register: registry, prefix, eventLoopMonitoringPrecision: 20 });
}
