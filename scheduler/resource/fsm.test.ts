import { describe, expect, it } from 'vitest';
import { PEER_TRANSITIONS, StateMachine, TASK_TRANSITIONS, type PeerState, type TaskState } from './fsm.js';

describe('task lifecycle', () => {
  it('follows Pending → Running → Succeeded | Failed, and Leave', () => {
    const m = new StateMachine<TaskState>('task', TASK_TRANSITIONS, 'Pending', 0);
    m.transition('Running', 1);
    m.transition('Succeeded', 2);
    expect(m.state).toBe('Succeeded');
    expect(m.since).toBe(2);
    m.transition('Leave', 3);
    expect(() => m.transition('Succeeded', 4)).toThrow(expect.objectContaining({ code: 'INVALID' }));
    expect(m.state).toBe('Leave');
  });

  it('rejects skipping Running', () => {
    const m = new StateMachine<TaskState>('task', TASK_TRANSITIONS, 'Pending', 0);
    expect(m.can('Succeeded')).toBe(false);
    expect(() => m.transition('Succeeded', 1)).toThrow(/task cannot go from Pending to Succeeded/);
    expect(() => m.transition('Failed', 1)).toThrow();
  });
});

describe('peer lifecycle', () => {
  it('walks the normal path and the back-to-source path', () => {
    const a = new StateMachine<PeerState>('peer', PEER_TRANSITIONS, 'Pending', 0);
    for (const s of ['ReceivedNormal', 'Running', 'Succeeded', 'Leave'] as const) a.transition(s, 1);
    const b = new StateMachine<PeerState>('peer', PEER_TRANSITIONS, 'Pending', 0);
    for (const s of ['BackToSource', 'Failed', 'Leave'] as const) b.transition(s, 1);
    expect(b.state).toBe('Leave');
  });

  it('rejects every transition not in the table', () => {
    const states = Object.keys(PEER_TRANSITIONS) as PeerState[];
    let illegal = 0;
    for (const from of states) {
      for (const to of states) {
        const m = new StateMachine<PeerState>('peer', PEER_TRANSITIONS, from, 0);
        if (PEER_TRANSITIONS[from].includes(to)) m.transition(to, 1);
        else {
          illegal++;
          expect(() => m.transition(to, 1)).toThrow(expect.objectContaining({ code: 'INVALID' }));
          expect(m.state).toBe(from);
        }
      }
    }
    // Terminal states are terminal: nothing leaves Leave, and Succeeded only to Leave.
    expect(PEER_TRANSITIONS.Leave).toEqual([]);
    expect(PEER_TRANSITIONS.Succeeded).toEqual(['Leave']);
    expect(illegal).toBeGreaterThan(40);
  });
});
