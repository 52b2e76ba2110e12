/**
 * What every role's Prometheus registry shares: Dragonfly's task size levels and the process/Node
 * runtime metrics. The metric names themselves live beside each role (agent/metrics.ts,
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

const MiB = 1024 * 1024;
/** Upper bounds (exclusive) of levels 1..19; level 20 is everything from 1 TiB up. */
const LEVEL_BOUNDS = [1, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096, 8192, 16384, 32768, 65536, 131072, 262144, 524288, 1048576].map((m) => m * MiB);

/**
 * Dragonfly's `task_size_level` label (client `TaskSize::calculate_size_level`): "0" for an unknown
 * or empty size, "1" below 1 MiB, "2" below 4 MiB, then one level per doubling up to 1 GiB ("10"),
 * a jump to 4 GiB ("11"), doublings again up to 1 TiB ("19"), "20" above.
 */
export function taskSizeLevel(bytes: number): string {
  if (!(bytes > 0)) return '0';
  const i = LEVEL_BOUNDS.findIndex((b) => bytes < b);
  return String(i < 0 ? 20 : i + 1);
}

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
