/**
 * Garbage collection of peers, tasks and hosts by TTL (Dragonfly runs the same three sweeps).
 * Pure over (resources, ttl, now), so tests drive it with any time they like.
 */
import type { SchedulerConfig } from './config.js';
import type { Resources } from './resource/resources.js';

/** A host that announced an interval is dropped after this many missed announces (or its TTL, if sooner). */
export const MISSED_ANNOUNCES = 3;

export interface GcResult {
  peers: number;
  tasks: number;
  hosts: number;
}

/** Whether a host stopped announcing: ~3 missed intervals, or hostTTL at the latest. */
export function hostExpired(lastAnnounce: number, intervalMs: number, hostTTL: number, now: number): boolean {
  const ttl = intervalMs > 0 ? Math.min(hostTTL, MISSED_ANNOUNCES * intervalMs) : hostTTL;
  return now - lastAnnounce > ttl;
}

/** Runs one sweep: expired hosts (with their peers), stale or failed peers, then empty tasks. */
export function collectGarbage(resources: Resources, gc: SchedulerConfig['gc'], now: number): GcResult {
  const result: GcResult = { peers: 0, tasks: 0, hosts: 0 };
  for (const host of resources.hosts.list()) {
    if (hostExpired(host.lastAnnounce, host.announceIntervalMs, gc.hostTTL, now)) {
      result.peers += host.peers.size;
      resources.hosts.delete(host.id);
      result.hosts++;
    }
  }
  const doomed: string[] = [];
  for (const peer of resources.allPeers()) {
    // A failed peer is never a parent again; a peer whose stream is gone can never be told anything.
    const dead = peer.fsm.is('Failed', 'Leave') || (peer.stream === undefined && !peer.fsm.is('Succeeded'));
    if (dead || now - peer.updatedAt > gc.peerTTL) doomed.push(peer.id);
  }
  for (const id of doomed) {
    const peer = resources.peer(id);
    if (peer) peer.task.updatedAt = Math.max(peer.task.updatedAt, now);
    if (resources.deletePeer(id)) result.peers++;
  }
  for (const task of resources.tasks.list()) {
    if (task.peerCount === 0 && now - task.updatedAt > gc.taskTTL) {
      resources.deleteTask(task.id);
      result.tasks++;
    }
  }
  return result;
}
