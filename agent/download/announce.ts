/**
 * Telling a scheduler (restarted, or first met) what this host holds, so it hands those tasks out as
 * parents instead of sending the next peers to the origin.
 */
import { withTimeout } from '../../adapters/clock.js';
import { errorMessage } from '../../adapters/errors.js';
import { encodeDownload } from '../../scheduler/protocol/download.js';
import { HELD_TASK_DESCRIPTION } from '../../scheduler/protocol/messages.js';
import { pieceBounds } from '../../scheduler/protocol/task-id.js';
import type { TaskManagerDeps } from './types.js';

/**
 * Tells the scheduler at `addr` (restarted, or first met) which complete tasks this host holds, so
 * it can hand them out as parents instead of sending the next peers to the origin: per task one
 * short AnnouncePeer stream that registers the peer and reports every piece with its digest, as a
 * finished read from the origin would. Tasks of another scheduler (hash ring), tasks downloading
 * now (they register themselves) and partial tasks (a peer that never finishes would hold its
 * children) are left out. Never throws.
 */
export async function announceHeld(
  deps: Pick<TaskManagerDeps, 'scheduler' | 'host' | 'store' | 'logger'>,
  running: (taskId: string) => boolean,
  stopping: () => boolean,
  addr: string,
  only?: string,
): Promise<number> {
  const sched = deps.scheduler;
  if (!sched || stopping()) return 0;
  const hostId = deps.host().id;
  let n = 0;
  for (const s of [...deps.store.tasks.values()]) {
    const m = s.meta;
    if (!m.complete || m.contentLength <= 0 || running(m.taskId) || sched.pick(m.taskId) !== addr || stopping() || (only !== undefined && m.taskId !== only)) continue;
    try {
      const call = await withTimeout(sched.openPeerStream(addr), 5_000, 'scheduler did not accept the stream');
      await new Promise<void>((resolve) => {
        const done = () => {
          clearTimeout(t);
          resolve();
        };
        const t = setTimeout(() => {
          call.cancel();
          done();
        }, 5_000);
        call.on('data', () => undefined);
        call.on('error', done);
        call.on('end', done);
        const base = { host_id: hostId, task_id: m.taskId, peer_id: m.peerId };
        const download = encodeDownload({ url: m.url, digest: m.digestVerified ? m.digest : undefined, tag: m.tag, application: m.application, pieceLength: m.pieceLength, needBackToSource: true });
        call.write({ ...base, register_peer_request: { download } });
        call.write({ ...base, download_peer_back_to_source_started_request: { description: HELD_TASK_DESCRIPTION, content_length: m.contentLength, piece_length: m.pieceLength } });
        for (const num of s.order) {
          const b = pieceBounds(num, m.contentLength, m.pieceLength);
          call.write({ ...base, download_piece_back_to_source_finished_request: { piece: { number: num, parent_id: '', offset: b.offset, length: b.length, digest: m.pieces[num], traffic_type: 'BACK_TO_SOURCE', cost_ms: 0 } } });
        }
        call.write({ ...base, download_peer_back_to_source_finished_request: { content_length: m.contentLength, piece_count: s.pieceCount } });
        call.end();
      });
      n++;
    } catch (err) {
      deps.logger.debug('announcing a held task failed', { taskId: m.taskId, scheduler: addr, err: errorMessage(err) });
    }
  }
  if (n > 0) deps.logger.info('announced held tasks to scheduler', { scheduler: addr, tasks: n });
  return n;
}

