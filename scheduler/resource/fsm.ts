/**
 * Task and peer lifecycles as explicit transition tables, after Dragonfly's
 * scheduler/resource/standard/{task,peer}.go. A transition not in the table throws
 * InvalidError (code INVALID), so a protocol message out of order can never corrupt state.
 */
import { InvalidError } from '../../adapters/errors.js';

export type TaskState = 'Pending' | 'Running' | 'Succeeded' | 'Failed' | 'Leave';

/** from → states it may move to. */
export const TASK_TRANSITIONS: Readonly<Record<TaskState, readonly TaskState[]>> = {
  Pending: ['Running', 'Leave'],
  // Running → Running: a second peer starts downloading; harmless.
  Running: ['Succeeded', 'Failed', 'Leave'],
  // A succeeded task runs again when its holders all left or a peer re-downloads it.
  Succeeded: ['Running', 'Failed', 'Leave'],
  Failed: ['Running', 'Leave'],
  Leave: ['Running'],
};

export type PeerState =
  | 'Pending'
  | 'ReceivedEmpty'
  | 'ReceivedNormal'
  | 'Running'
  | 'BackToSource'
  | 'Succeeded'
  | 'Failed'
  | 'Leave';

export const PEER_TRANSITIONS: Readonly<Record<PeerState, readonly PeerState[]>> = {
  Pending: ['ReceivedEmpty', 'ReceivedNormal', 'BackToSource', 'Failed', 'Leave'],
  ReceivedEmpty: ['Succeeded', 'Failed', 'Leave'],
  // ReceivedNormal → BackToSource: rescheduled before starting and sent to the origin.
  ReceivedNormal: ['Running', 'BackToSource', 'Succeeded', 'Failed', 'Leave'],
  Running: ['BackToSource', 'Succeeded', 'Failed', 'Leave'],
  BackToSource: ['Succeeded', 'Failed', 'Leave'],
  Succeeded: ['Leave'],
  Failed: ['Leave'],
  Leave: [],
};

/** A small state holder enforcing a transition table. */
export class StateMachine<S extends string> {
  private current: S;
  private changedAt: number;

  constructor(
    private readonly kind: string,
    private readonly table: Readonly<Record<S, readonly S[]>>,
    initial: S,
    now: number,
  ) {
    this.current = initial;
    this.changedAt = now;
  }

  get state(): S {
    return this.current;
  }

  get since(): number {
    return this.changedAt;
  }

  /** True when `to` is reachable from the current state in one step. */
  can(to: S): boolean {
    return this.table[this.current].includes(to);
  }

  /** True when the current state is one of `states`. */
  is(...states: S[]): boolean {
    return states.includes(this.current);
  }

  /** Moves to `to`. Throws InvalidError when the table does not allow it. */
  transition(to: S, now: number): void {
    if (!this.can(to)) {
      throw new InvalidError(`${this.kind} cannot go from ${this.current} to ${to}`, { details: { from: this.current, to } });
    }
    this.current = to;
    this.changedAt = now;
  }
}
