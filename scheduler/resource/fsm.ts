/**
 * Task and peer lifecycles as explicit transition tables, after Dragonfly's
 * scheduler/resource/standard/{task,peer}.go. A transition not in the table throws
 * InvalidError (code INVALID), so a protocol message out of order can never corrupt state.
 */

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

/** The table runner lives in adapters/fsm.ts (the agent's download lifecycles use it too). */
export { StateMachine } from '../../adapters/fsm.js';
