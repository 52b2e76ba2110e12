/**
 * SIGTERM/SIGINT held from the first line of `damselfly` until a command takes over: loading a
 * role's modules takes a while, and a signal in that window must stop the role cleanly (exit 0),
 * not kill it half-started. Commands that are not long-running give the signal back (default action).
 */
let pending: NodeJS.Signals | undefined;
let holding = false;
const hold = (sig: NodeJS.Signals): void => {
  pending ??= sig;
};

export function holdSignals(): void {
  if (holding) return;
  holding = true;
  process.on('SIGTERM', hold);
  process.on('SIGINT', hold);
}

/** Stops holding (install your own handlers first); returns the signal that arrived meanwhile, if any. */
export function releaseSignals(): NodeJS.Signals | undefined {
  if (holding) {
    process.off('SIGTERM', hold);
    process.off('SIGINT', hold);
    holding = false;
  }
  const sig = pending;
  pending = undefined;
  return sig;
}
