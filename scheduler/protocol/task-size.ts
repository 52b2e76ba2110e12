/**
 * Dragonfly's `task_size_level` metric label (dragonfly-client-metric's TaskSize::calculate_size_level),
 * shared by the agent's and the scheduler's duration metrics so dashboards built for Dragonfly
 * bucket our tasks the same way.
 */
const MiB = 1024 * 1024;
const GiB = 1024 * MiB;

/** Exclusive upper bounds of levels 1..19; anything larger is level 20. */
const UPPER_BOUNDS = [
  1 * MiB, 4 * MiB, 8 * MiB, 16 * MiB, 32 * MiB, 64 * MiB, 128 * MiB, 256 * MiB, 512 * MiB, 1 * GiB,
  4 * GiB, 8 * GiB, 16 * GiB, 32 * GiB, 64 * GiB, 128 * GiB, 256 * GiB, 512 * GiB, 1024 * GiB,
];

/** '0' for an unknown (zero, negative or non-finite) size, else '1'..'20'. */
export function taskSizeLevel(bytes: number): string {
  if (!Number.isFinite(bytes) || bytes <= 0) return bytes === Infinity ? '20' : '0';
  const i = UPPER_BOUNDS.findIndex((upper) => bytes < upper);
  return String(i < 0 ? 20 : i + 1);
}
