/**
 * The scheduler's in-memory registry of hosts, tasks and peers. This is also the API the manager
 * engineer's job code (preheat, get_task, delete_task) reads:
 *
 *   resources.hosts.list({ type: 'seed' })   every announced seed-peer host
 *   resources.hosts.get(id)                   one host or undefined
 *   resources.tasks.get(taskId)               one task or undefined
 *   resources.peersOfTask(taskId)             the task's peers (empty when unknown)
 *
 * Mutations go through the methods here so that host↔peer↔task links and DAG edge bookkeeping
 * (upload slots on parent hosts) stay consistent.
 */
import { NotFoundError } from '../../adapters/errors.js';
import { hostLoad, isUploadFull } from './load.js';
import { Host, type HostInfo } from './host.js';
import { Peer } from './peer.js';
import { Task, type TaskSource } from './task.js';

export type HostFilter = { type?: 'seed' | 'normal' | HostInfo['type'] };

export class HostRegistry {
  private readonly byId = new Map<string, Host>();

  constructor(private readonly owner: Resources) {}

  get size(): number {
    return this.byId.size;
  }

  get(id: string): Host | undefined {
    return this.byId.get(id);
  }

  /** Hosts, optionally only seed peers (`type: 'seed'`), normal ones, or one exact HostType. */
  list(filter: HostFilter = {}): Host[] {
    const all = [...this.byId.values()];
    const t = filter.type;
    if (!t) return all;
    if (t === 'seed') return all.filter((h) => h.isSeed);
    if (t === 'normal') return all.filter((h) => !h.isSeed);
    return all.filter((h) => h.info.type === t);
  }

  /** Creates or refreshes a host from an announcement; returns it. */
  announce(info: HostInfo, intervalMs: number, now: number): Host {
    let host = this.byId.get(info.id);
    if (host) {
      host.info = info;
      host.lastAnnounce = now;
    } else {
      host = new Host(info, now);
      this.byId.set(info.id, host);
    }
    host.announceIntervalMs = intervalMs;
    host.loadEpoch++;
    // The announced bandwidth may have grown: its peers may be parents with spare upload again.
    for (const id of host.peers) {
      const p = this.owner.peer(id);
      if (p) p.task.spare.add(p);
    }
    return host;
  }

  /** Removes a host and every peer on it. Returns false when it was unknown. */
  delete(id: string): boolean {
    const host = this.byId.get(id);
    if (!host) return false;
    for (const peerId of [...host.peers]) this.owner.deletePeer(peerId);
    this.byId.delete(id);
    return true;
  }
}

export class TaskRegistry {
  private readonly byId = new Map<string, Task>();

  get size(): number {
    return this.byId.size;
  }

  get(id: string): Task | undefined {
    return this.byId.get(id);
  }

  list(): Task[] {
    return [...this.byId.values()];
  }

  /** Returns the task, creating it (Pending) when new. */
  getOrCreate(id: string, source: TaskSource, now: number): Task {
    let task = this.byId.get(id);
    if (!task) {
      task = new Task(id, source, now);
      this.byId.set(id, task);
    } else if (source.url) {
      task.source = source;
    }
    return task;
  }

  /** Internal: drops the record only; use Resources.deleteTask to drop its peers too. */
  remove(id: string): void {
    this.byId.delete(id);
  }
}

export class Resources {
  readonly hosts = new HostRegistry(this);
  readonly tasks = new TaskRegistry();
  private readonly peers = new Map<string, Peer>();

  get peerCount(): number {
    return this.peers.size;
  }

  peer(id: string): Peer | undefined {
    return this.peers.get(id);
  }

  allPeers(): IterableIterator<Peer> {
    return this.peers.values();
  }

  /** The peers of a task; empty when the task is unknown. */
  peersOfTask(taskId: string): Peer[] {
    const task = this.tasks.get(taskId);
    return task ? [...task.peers()] : [];
  }

  /**
   * Creates a peer of `task` on `host`. A peer id that already exists (an agent re-registering
   * after a broken stream) replaces the old record. Throws NotFoundError if the host is unknown.
   */
  createPeer(id: string, task: Task, hostId: string, now: number): Peer {
    const host = this.hosts.get(hostId);
    if (!host) throw new NotFoundError(`host ${hostId} not found: announce the host first`);
    if (this.peers.has(id)) this.deletePeer(id);
    const peer = new Peer(id, task, host, now);
    this.peers.set(id, peer);
    host.peers.add(id);
    task.dag.addVertex(id, peer);
    task.spare.add(peer);
    task.updatedAt = now;
    return peer;
  }

  /** Adds the parent edge and charges one upload slot on the parent's host. Throws as Dag.addEdge. */
  addParent(parent: Peer, child: Peer): void {
    child.task.dag.addEdge(parent.id, child.id);
    parent.host.concurrentUploadCount++;
    this.parentsChanged(child);
    // Keep Task.spare close to exact, so a draw from it finds the few hosts with upload left even
    // in a task of thousands (a chain: every host but the tail's is full).
    const host = parent.host;
    if (host.freeUploadCount <= 0 || isUploadFull(hostLoad(host, (id) => this.peers.get(id)))) {
      for (const id of host.peers) {
        const p = this.peers.get(id);
        if (p) p.task.spare.delete(p);
      }
    }
    // The child's draw is now spread wider: its other parents may have upload to spare.
    for (const pid of child.task.dag.parents(child.id)) {
      const p = this.peers.get(pid);
      if (p && p !== parent) child.task.spare.add(p);
    }
  }

  /** Drops the child's parent edges and returns the slots to the parents' hosts. */
  deleteParents(child: Peer): void {
    for (const pid of child.task.dag.deleteInEdges(child.id)) {
      const p = this.peers.get(pid);
      if (p) this.released(p);
    }
  }

  /** Drops the edge parentId → child (if any) and returns its slot to the parent's host. */
  deleteParent(parentId: string, child: Peer): void {
    if (!child.task.dag.parents(child.id).has(parentId)) return;
    child.task.dag.deleteEdge(parentId, child.id);
    const p = this.peers.get(parentId);
    if (p) this.released(p);
    this.parentsChanged(child);
  }

  /** edgeRate divides by the child's parent count: each of its parents' hosts has a new load. */
  private parentsChanged(child: Peer): void {
    for (const pid of child.task.dag.parents(child.id)) {
      const p = this.peers.get(pid);
      if (p) p.host.loadEpoch++;
    }
  }

  /** A child edge of `parent` is gone: one slot back, and its host may have upload to spare. */
  private released(parent: Peer): void {
    parent.host.concurrentUploadCount = Math.max(0, parent.host.concurrentUploadCount - 1);
    parent.host.loadEpoch++;
    if (this.peers.get(parent.id) === parent) parent.task.spare.add(parent);
  }

  /** Drops the peer's child edges, returning their slots to its host. */
  deleteChildren(parent: Peer): void {
    const children = parent.task.dag.deleteOutEdges(parent.id);
    for (const cid of children) {
      this.released(parent);
      const c = this.peers.get(cid);
      if (c) this.parentsChanged(c);
    }
  }

  /** Removes a peer from its task, host and every edge. Returns false when unknown. */
  deletePeer(id: string): boolean {
    const peer = this.peers.get(id);
    if (!peer) return false;
    this.deleteParents(peer);
    this.deleteChildren(peer);
    peer.task.dag.deleteVertex(id);
    peer.task.forget(peer);
    // A freed back-to-source slot may let a waiting peer go to the origin now.
    if (peer.task.backToSourcePeers.delete(id)) peer.task.wake();
    peer.host.peers.delete(id);
    peer.scheduleGeneration++;
    peer.stream = undefined;
    this.peers.delete(id);
    return true;
  }

  /** Removes a task and all its peers. Returns false when unknown. */
  deleteTask(id: string): boolean {
    const task = this.tasks.get(id);
    if (!task) return false;
    for (const p of [...task.peers()]) this.deletePeer(p.id);
    this.tasks.remove(id);
    return true;
  }
}
