/**
 * A small state holder enforcing a transition table (`from → states it may move to`). A transition
 * not in the table throws InvalidError (code INVALID), so an event out of order can never corrupt
 * state. The scheduler's task and peer lifecycles (scheduler/resource/fsm.ts) and the agent's
 * download lifecycles (agent/download/states.ts) are tables run by this.
 */
import { InvalidError } from './errors.js';

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
