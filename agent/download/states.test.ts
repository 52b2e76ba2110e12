import { describe, expect, it } from 'vitest';
import { InvalidError } from '../../adapters/errors.js';
import { silentLogger } from '../../adapters/log.js';
import { SESSION_TRANSITIONS, TASK_TRANSITIONS, type SessionState, type TaskState } from './states.js';
import { Task } from './task.js';
import type { StoredTask } from '../storage/store.js';

function reachable<S extends string>(table: Readonly<Record<S, readonly S[]>>, from: S): Set<S> {
  const seen = new Set<S>([from]);
  const todo = [from];
  while (todo.length > 0) for (const to of table[todo.pop()!]) if (!seen.has(to)) (seen.add(to), todo.push(to));
  return seen;
}

describe('download lifecycles', () => {
  it('every state is reachable from the first, and every path ends in a terminal state', () => {
    expect([...reachable(TASK_TRANSITIONS, 'running')].sort()).toEqual((Object.keys(TASK_TRANSITIONS) as TaskState[]).sort());
    expect([...reachable(SESSION_TRANSITIONS, 'registering')].sort()).toEqual((Object.keys(SESSION_TRANSITIONS) as SessionState[]).sort());
    for (const s of Object.keys(SESSION_TRANSITIONS) as SessionState[]) expect(reachable(SESSION_TRANSITIONS, s).has('closed')).toBe(true);
    expect(SESSION_TRANSITIONS.closed).toEqual([]);
    expect(TASK_TRANSITIONS.done).toEqual([]);
    expect(TASK_TRANSITIONS.failed).toEqual([]);
  });

  it('a session never goes back to registering, a detached one only back to what it was', () => {
    for (const [from, tos] of Object.entries(SESSION_TRANSITIONS) as [SessionState, readonly SessionState[]][]) {
      expect(tos).not.toContain('registering');
      // A detached session goes back to a scheduler only as what it already is.
      if (from === 'detached-p2p') expect([...tos].sort()).toEqual(['closed', 'p2p']);
      if (from === 'detached-source') expect([...tos].sort()).toEqual(['closed', 'source']);
    }
  });

  it('a task ends once: success after failure is refused, failure after success is a no-op', async () => {
    const stored = { meta: { contentLength: 10, pieceLength: 10, pieces: {} }, pieceCount: 1 } as unknown as StoredTask;
    const failed = new Task('t1', stored, { url: 'http://x/a' }, 'p1', silentLogger);
    failed.fail(new Error('origin 404'));
    expect(failed.state).toBe('failed');
    expect(() => failed.succeed()).toThrow(InvalidError);
    await expect(failed.finished.promise).rejects.toThrow('origin 404');

    const done = new Task('t2', stored, { url: 'http://x/b' }, 'p2', silentLogger);
    done.succeed();
    done.fail(new Error('late'));
    expect(done.state).toBe('done');
    await expect(done.finished.promise).resolves.toBeUndefined();
  });
});
