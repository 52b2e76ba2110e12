/**
 * The download engine's lifecycles as transition tables (run by adapters/fsm.ts: a move not in the
 * table throws InvalidError, so an answer out of order cannot corrupt a download).
 *
 * A task (task.ts) is one download of one task ID on this agent; every caller that wants the same
 * task shares it while it runs:
 *
 *   running ──all wanted pieces verified, metadata durable──▶ done
 *   running ──origin 4xx / integrity / disk full / deleted / shutdown / no way to deliver──▶ failed
 *
 * A peer session (peer-session.ts) is one AnnouncePeer stream of a running task:
 *
 *   registering ──normal_task_response (parents)──▶ p2p
 *   registering ──need_back_to_source_response───▶ source
 *   p2p ──need_back_to_source_response (parents not delivering)──▶ source
 *   p2p ──stream lost, a live parent left──▶ detached-p2p     (digests from the parents: detached.ts)
 *   source ──stream lost──▶ detached-source                   (the origin read finishes without it)
 *   detached-p2p ──the scheduler answers again──▶ p2p          (registers again, reports its pieces)
 *   detached-source ──the scheduler answers again──▶ source    (registers again as the source)
 *   any ──wants met / empty task / failure / timeout──▶ closed
 *
 * A session that loses its stream while registering closes with SchedulerLostError: the task manager
 * waits a moment for the scheduler to answer again and registers again. One that loses it in p2p
 * with no live parent closes with UnavailableError: the task manager reads the origin.
 */
export type TaskState = 'running' | 'done' | 'failed';

export const TASK_TRANSITIONS: Readonly<Record<TaskState, readonly TaskState[]>> = {
  running: ['done', 'failed'],
  done: [],
  failed: [],
};

export type SessionState = 'registering' | 'p2p' | 'source' | 'detached-p2p' | 'detached-source' | 'closed';

export const SESSION_TRANSITIONS: Readonly<Record<SessionState, readonly SessionState[]>> = {
  registering: ['p2p', 'source', 'closed'],
  p2p: ['source', 'detached-p2p', 'closed'],
  source: ['detached-source', 'closed'],
  // The scheduler answers again: the session registers there again (peer-session.ts reattach).
  'detached-p2p': ['p2p', 'closed'],
  'detached-source': ['source', 'closed'],
  closed: [],
};
