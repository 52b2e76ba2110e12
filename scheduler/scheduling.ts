/**
 * The scheduling loop (after Dragonfly's scheduler/scheduling/scheduling.go): find parents for a
 * peer, or send it to the origin, or wait and retry. Decisions are applied to the resources here
 * (states, DAG edges, back-to-source set) synchronously with the decision, so two peers scheduled
 * at the same moment can never both take the last back-to-source slot.
 */
import { InvalidError } from '../adapters/errors.js';
import { isBadParent, isDeadParent, rankParents } from './evaluator.js';
import { hostLoad, isUploadFull } from './resource/load.js';
import type { Clock } from '../adapters/clock.js';
import type { SchedulerConfig } from './config.js';
import { PIECE_COST_WINDOW, type Peer } from './resource/peer.js';
import type { Resources } from './resource/resources.js';
import type { Task } from './resource/task.js';
import type { Host } from './resource/host.js';

/**
 * When no sampled candidate has spare upload bandwidth, up to this many draws from the task's spare
 * index (Task.spare) look for one before falling back to a busy parent: a random sample of
 * filterParentLimit (15) easily misses the one peer at the end of a chain that still has upload to
 * give. Entries found full are dropped from the index, so the draws stay useful and bounded.
 */
export const SPARE_DRAWS = 64;

/** At most this many of a task's peers are scanned for a last-resort parent (lastResortParents). */
export const LAST_RESORT_SCAN = 1_000;

/** After a seed peer failed a task, normal peers go to the origin themselves for this long. */
export const SEED_PEER_FAILED_TIMEOUT_MS = 30 * 60_000;

export type Decision =
  | { kind: 'normal'; parents: Peer[] }
  | { kind: 'backToSource'; reason: string }
  | { kind: 'empty' }
  /** `code`: how the failure reaches the agent (gRPC status); FAILED_PRECONDITION when absent. */
  | { kind: 'fail'; reason: string; code?: 'NOT_FOUND' | 'FAILED_PRECONDITION' }
  /** The peer left or was rescheduled meanwhile; send nothing. */
  | { kind: 'cancelled' };

export interface SchedulingHooks {
  /** Asks a seed peer host to download the task; returns at once, reports failure via `onSeedFailed`. */
  triggerSeedPeer?(seed: Host, task: Task, peer: Peer): void;
}

/**
 * Dragonfly's download priority, LEVEL0..LEVEL6 (the peer's `priority`), as a number; anything else
 * counts as LEVEL0. For a task no peer holds yet (DF scheduler/service/service_v2.go
 * downloadTaskBySeedPeer): LEVEL0, 4, 5, 6 ask a seed peer to fetch it; LEVEL3 sends the peer itself
 * to the origin; LEVEL2 fails NOT_FOUND (no candidate parents); LEVEL1 fails FAILED_PRECONDITION
 * (downloading such a task is forbidden at that priority).
 */
export function priorityLevel(priority: string): number {
  const m = /^LEVEL([0-6])$/.exec(priority);
  return m ? Number(m[1]) : 0;
}

type Options = SchedulerConfig['scheduling'] & { seedPeerEnable: boolean; seedTriggerTimeout: number };

export class Scheduling {
  private readonly peerOf: (id: string) => Peer | undefined;
  private readonly load: (h: Host) => number;

  /** Until then (clock time), a task no known peer holds is not yet sent to the origin: see rejoinGrace. */
  private readonly rejoinUntil: number;

  constructor(
    private readonly resources: Resources,
    private readonly opts: Options,
    private readonly clock: Clock,
    private readonly hooks: SchedulingHooks = {},
    private readonly pickSeed: (task: Task) => Host | undefined = () => undefined,
  ) {
    this.peerOf = (id) => this.resources.peer(id);
    this.load = (h) => hostLoad(h, this.peerOf);
    this.rejoinUntil = clock.now() + opts.rejoinGrace;
  }

  /** Whether a peer of the task other than on `host` holds or is reading the whole content. */
  hasSource(task: Task, host: Host): boolean {
    for (const p of task.sources) {
      if (p.host !== host && !p.partial && p.fsm.is('BackToSource', 'Succeeded', 'Running')) return true;
    }
    return false;
  }

  /**
   * For a normal peer of a task nobody holds yet: asks a seed peer to go back to source (if one is
   * announced and none was asked already). Returns true when a seed peer is (now) on its way.
   */
  maybeTriggerSeedPeer(peer: Peer): boolean {
    const task = peer.task;
    const now = this.clock.now();
    if (!this.opts.seedPeerEnable || peer.host.isSeed || peer.needBackToSource) return false;
    const level = priorityLevel(peer.priority);
    if (level >= 1 && level <= 3) return false; // see priorityLevel()
    if (task.seedTriggeredAt !== undefined) return true;
    if (task.seedFailedAt !== undefined && now - task.seedFailedAt < SEED_PEER_FAILED_TIMEOUT_MS) return false;
    if (this.hasSource(task, peer.host)) return false;
    const seed = this.pickSeed(task);
    if (!seed || !this.hooks.triggerSeedPeer) return false;
    task.seedTriggeredAt = now;
    this.hooks.triggerSeedPeer(seed, task, peer);
    return true;
  }

  /** Called when a seed trigger failed: waiting peers of the task may go to the origin. */
  seedPeerFailed(task: Task): void {
    task.seedTriggeredAt = undefined;
    task.seedFailedAt = this.clock.now();
    task.wake();
  }

  /** Why candidates were dropped in the last findCandidateParents (for debug logs). */
  readonly lastFilter = { blocked: 0, parent: 0, host: 0, orphan: 0, bad: 0, full: 0, busy: 0, cycle: 0, fallback: 0 };

  /**
   * Candidate parents for `peer`, best first, at most candidateParentLimit: a random sample of
   * filterParentLimit peers of the task, filtered (blocklist incl. self, current parents, same host,
   * disable_shared, normal peers that neither have a parent nor are a source, bad parents, no free
   * upload slot, edges that would close a cycle), split by upload bandwidth (resource/load.ts
   * uploadLoad), ranked by the evaluator. Hosts with spare bandwidth come first and alone; when
   * every candidate's host is busy, a peer without parents still gets the least-loaded one (refusing
   * would send it to the origin after retryBackToSourceLimit rounds), while a peer that keeps its
   * parents (`topUp`) gets none.
   */
  findCandidateParents(peer: Peer, topUp = false): Peer[] {
    const task = peer.task;
    const now = this.clock.now();
    const sample = this.sample(task, peer);
    const current = task.dag.parents(peer.id);
    // hostLoad caches per host until its loadEpoch moves; nothing here moves one.
    const load = this.load;
    const dropped = this.lastFilter;
    dropped.blocked = dropped.parent = dropped.host = dropped.orphan = dropped.bad = dropped.full = dropped.busy = dropped.cycle = dropped.fallback = 0;
    const usable = (list: Iterable<Peer>, limit: number): Peer[] => {
      const filtered: Peer[] = [];
      for (const p of list) {
        if (filtered.length >= limit) break;
        if (p === peer) continue;
        if (peer.blockParents.has(p.id)) dropped.blocked++;
        else if (current.has(p.id)) dropped.parent++;
        else if (p.host === peer.host || p.host.info.disableShared) dropped.host++;
        else if (!p.host.isSeed && task.dag.inDegree(p.id) === 0 && !p.fsm.is('BackToSource', 'Succeeded')) dropped.orphan++;
        else if (isBadParent(p, now, this.opts.pieceTimeout, PIECE_COST_WINDOW)) dropped.bad++;
        else if (p.host.freeUploadCount <= 0) dropped.full++;
        else filtered.push(p);
      }
      if (filtered.length === 0) return filtered;
      // One bounded search below `peer`, shared by every candidate that needs one (dag.ts).
      const allowed = task.dag.canAddEdges(filtered.map((p) => p.id), peer.id);
      if (allowed.length === filtered.length) return filtered;
      dropped.cycle += filtered.length - allowed.length;
      const keep = new Set(allowed);
      return filtered.filter((p) => keep.has(p.id));
    };
    let ok = usable(sample, Infinity);
    let spare = ok.filter((p) => !isUploadFull(load(p.host)));
    dropped.busy = ok.length - spare.length;
    if (spare.length === 0 && task.peerCount > sample.length + 1) {
      const seen = new Set(sample);
      const drawn: Peer[] = [];
      for (let i = 0; i < SPARE_DRAWS && task.spare.size > 0 && drawn.length < this.opts.filterParentLimit; i++) {
        const p = task.spare.at(Math.floor(this.clock.random() * task.spare.size));
        if (this.resources.peer(p.id) !== p || p.host.freeUploadCount <= 0 || isUploadFull(load(p.host))) task.spare.delete(p);
        else if (!seen.has(p)) {
          seen.add(p);
          drawn.push(p);
        }
      }
      const rest = usable(drawn, Infinity);
      if (rest.length > 0) (ok = rest), (spare = rest);
    }
    if (spare.length > 0 || topUp) return rankParents(spare, peer, task.pieceCount, load).slice(0, this.opts.candidateParentLimit);
    // Every host is busy: the least-loaded one (normal peers before seeds, then by score) rather
    // than no parent at all.
    const fallback = rankParents(ok, peer, task.pieceCount, load).sort((a, b) => load(a.host) - load(b.host) || Number(a.host.isSeed) - Number(b.host.isSeed));
    dropped.fallback = fallback.length > 0 ? 1 : 0;
    return fallback.slice(0, 1);
  }

  /**
   * Parents for a peer the filters of findCandidateParents left without any, before it is sent to
   * the origin or failed (issue 13, finding 7: after a parent died, its children each found only
   * each other, orphaned, and a seed that looked slow or full, and went to the origin or gave up).
   * Every live peer of the task that holds something qualifies: a source, a seed, or a peer with
   * pieces, whatever its load or last piece cost (a slow or busy holder still beats the origin, and
   * a child whose own parent died keeps what it got). Not: blocked ones, the same host,
   * disable_shared, dead ones (failed, left, stalled), edges closing a cycle. Most pieces first.
   */
  lastResortParents(peer: Peer): Peer[] {
    const task = peer.task;
    const now = this.clock.now();
    const found: Peer[] = [];
    let scanned = 0;
    for (const p of task.peers()) {
      if (++scanned > LAST_RESORT_SCAN) break;
      if (p === peer || peer.blockParents.has(p.id) || p.host === peer.host || p.host.info.disableShared) continue;
      if (isDeadParent(p, now, this.opts.pieceTimeout)) continue;
      if (p.host.isSeed || p.fsm.is('BackToSource', 'Succeeded') || p.finishedPieces.size > 0) found.push(p);
    }
    const allowed = new Set(task.dag.canAddEdges(found.map((p) => p.id), peer.id));
    const source = (p: Peer): number => Number(p.host.isSeed || p.fsm.is('BackToSource', 'Succeeded'));
    return found
      .filter((p) => allowed.has(p.id))
      .sort((a, b) => source(b) - source(a) || b.finishedPieces.size - a.finishedPieces.size)
      .slice(0, this.opts.candidateParentLimit);
  }

  /** Up to filterParentLimit peers of the task other than `peer`, chosen uniformly, in O(filterParentLimit). */
  private sample(task: Task, peer: Peer): Peer[] {
    return task.dag.sample(this.opts.filterParentLimit, () => this.clock.random(), peer.id);
  }

  /**
   * Runs the loop for `peer` until it has parents, must go back to source, fails, or is cancelled
   * (the peer left, or a newer schedule of it started). `disableBackToSource` comes from the download.
   *
   * A peer that still has parents (a reschedule that blocked only some of them, or an agent asking
   * for more) keeps them: agents never drop a parent that serves them, so the DAG must keep the
   * edges too, or the parents' upload load would be undercounted. It gets one round of additional
   * parents with spare bandwidth, or (none has any) its current parents again, which agents ignore.
   * Edges to parents the peer blocked, and to dead parents (failed, left, stalled), are dropped
   * first; a parent whose last piece was slow keeps its edge (the agent keeps fetching from it).
   */
  async schedule(peer: Peer, disableBackToSource = false): Promise<Decision> {
    const gen = ++peer.scheduleGeneration;
    const task = peer.task;
    const o = this.opts;
    const now0 = this.clock.now();
    for (const id of [...task.dag.parents(peer.id)]) {
      const p = task.dag.get(id);
      if (peer.blockParents.has(id) || !p || isDeadParent(p, now0, o.pieceTimeout)) this.resources.deleteParent(id, peer);
    }
    if (task.dag.inDegree(peer.id) > 0 && !peer.needBackToSource && !peer.fsm.is('BackToSource')) {
      const more = this.findCandidateParents(peer, true);
      const d = more.length > 0 ? this.applyNormal(peer, more) : undefined;
      if (d) return d;
      const current: Peer[] = [];
      for (const id of task.dag.parents(peer.id)) {
        const p = task.dag.get(id);
        if (p) current.push(p);
      }
      return { kind: 'normal', parents: current };
    }
    // Rounds are counted from here, or from the end of the rejoin grace for a peer that waited it out.
    let since = now0;
    for (let counted = 0; ; counted++) {
      if (peer.scheduleGeneration !== gen || this.resources.peer(peer.id) !== peer) return { kind: 'cancelled' };
      const now = this.clock.now();
      // Rounds: full waits, or the time spent waiting in retryIntervals, whichever is more. Wake-ups
      // alone do not burn the budget, but no stream of wake-ups can keep a peer waiting forever.
      const n = Math.max(counted, Math.floor((now - since) / o.retryInterval));
      if (task.contentLength === 0) return this.applyEmpty(peer);
      if (task.seedTriggeredAt !== undefined && now - task.seedTriggeredAt > o.seedTriggerTimeout && !this.hasSource(task, peer.host)) {
        this.seedPeerFailed(task);
      }
      const unheld = !peer.needBackToSource && task.seedTriggeredAt === undefined && !this.hasSource(task, peer.host);
      // Just started: the agents that hold this task may not have come back yet (they reconnect
      // within ~2.4 s and register again with what they hold); the peer waits for them rather than
      // taking the origin (or failing at LEVEL1/2) for a task its neighbours hold.
      if (unheld && now < this.rejoinUntil) {
        const parents = this.findCandidateParents(peer);
        const d = parents.length > 0 ? this.applyNormal(peer, parents) : undefined;
        if (d) return d;
        const waiter = new AbortController();
        task.waiters.add(waiter);
        await this.clock.sleep(Math.min(o.retryInterval, this.rejoinUntil - now), waiter.signal);
        task.waiters.delete(waiter);
        since = Math.min(this.clock.now(), this.rejoinUntil);
        counted = -1;
        continue;
      }
      // LEVEL1/LEVEL2 only (see priorityLevel): other peers skip the scan of the task's peers.
      const level = priorityLevel(peer.priority);
      if ((level === 1 || level === 2) && unheld) {
        if (level === 1) return { kind: 'fail', reason: 'priority LEVEL1: downloading a task no peer holds is forbidden', code: 'FAILED_PRECONDITION' };
        return { kind: 'fail', reason: 'priority LEVEL2: no peer holds the task, no candidate parents', code: 'NOT_FOUND' };
      }
      if (!disableBackToSource && task.canBackToSource(o.backToSourceCount)) {
        if (peer.needBackToSource) return this.applyBackToSource(peer, 'peer needs back-to-source');
        if (task.seedTriggeredAt === undefined && !this.hasSource(task, peer.host)) {
          // A seed peer that announced after this peer registered (after a restart, say) still
          // fetches the task for it; the wait for it is bounded by seedTriggerTimeout.
          if (this.maybeTriggerSeedPeer(peer)) continue;
          return this.applyBackToSource(peer, 'no peer of the task holds the content yet');
        }
        // A pending seed trigger (younger than seedTriggerTimeout, checked above) will bring a
        // source; a normal peer reading the origin meanwhile would only double the origin traffic.
        if (n >= o.retryBackToSourceLimit && task.seedTriggeredAt === undefined) {
          return this.applyBackToSource(peer, 'scheduling exceeded retryBackToSourceLimit');
        }
      }
      if (n >= o.retryLimit) return { kind: 'fail', reason: 'scheduling exceeded retryLimit' };
      this.resources.deleteParents(peer);
      const parents = this.findCandidateParents(peer);
      const d = parents.length > 0 ? this.applyNormal(peer, parents) : undefined;
      if (d) return d;
      // After one full wait with nothing acceptable: any live holder, rather than waiting on
      // towards the origin (or failing) while the task's content sits on live peers.
      if (n >= 1) {
        const held = this.lastResortParents(peer);
        const last = held.length > 0 ? this.applyNormal(peer, held) : undefined;
        if (last) return last;
      }
      // Jitter spreads retries of peers that registered together; a new source, parent or free
      // back-to-source slot on the task ends the wait early.
      const waiter = new AbortController();
      task.waiters.add(waiter);
      await this.clock.sleep(o.retryInterval * (0.5 + 0.5 * this.clock.random()), waiter.signal);
      task.waiters.delete(waiter);
      // Only a full wait counts as a round here (elapsed time bounds the rest, see above).
      if (waiter.signal.aborted) counted--;
    }
  }

  private applyEmpty(peer: Peer): Decision {
    if (peer.fsm.can('ReceivedEmpty')) peer.transition('ReceivedEmpty', this.clock.now());
    return { kind: 'empty' };
  }

  private applyBackToSource(peer: Peer, reason: string): Decision {
    const now = this.clock.now();
    this.resources.deleteParents(peer);
    if (!peer.fsm.is('BackToSource')) peer.transition('BackToSource', now);
    peer.task.backToSourcePeers.add(peer.id);
    if (peer.task.fsm.is('Pending', 'Failed', 'Leave')) peer.task.moveTo('Running', now);
    // Waiting peers can use this source as a parent right away.
    peer.task.wake();
    return { kind: 'backToSource', reason };
  }

  /**
   * Adds the edges; undefined when none could be added. Each candidate passed the DAG's check
   * against the graph before the first of them was added; the reorder after one edge can make the
   * next one's check exceed WALK_LIMIT (never close a cycle: the new edges all point into `peer`),
   * and such a candidate is skipped.
   */
  private applyNormal(peer: Peer, parents: Peer[]): Decision | undefined {
    const now = this.clock.now();
    let added = parents;
    for (let i = 0; i < parents.length; i++) {
      try {
        this.resources.addParent(parents[i], peer);
      } catch (err) {
        if (!(err instanceof InvalidError)) throw err;
        if (added === parents) added = parents.slice(0, i);
        continue;
      }
      if (added !== parents) added.push(parents[i]);
    }
    if (added.length === 0) return undefined;
    if (peer.fsm.is('Pending')) peer.transition('ReceivedNormal', now);
    if (peer.task.fsm.is('Pending', 'Failed', 'Leave')) peer.task.moveTo('Running', now);
    return { kind: 'normal', parents: added };
  }
}
