/**
 * Builders for in-process tests of the registry, evaluator, scheduling and GC.
 */
import type { HostInfo } from '../../scheduler/resource/host.js';
import { Resources } from '../../scheduler/resource/resources.js';
import type { PeerState } from '../../scheduler/resource/fsm.js';
import type { Peer } from '../../scheduler/resource/peer.js';

export function hostInfo(id: string, extra: Partial<HostInfo> = {}): HostInfo {
  return {
    id,
    type: 'NORMAL',
    hostname: id,
    ip: '127.0.0.1',
    port: 1,
    downloadPort: 2,
    idc: '',
    location: '',
    maxTxBandwidth: 0,
    uploadLimit: 0,
    concurrentUploadCount: 0,
    proxyPort: 0,
    schedulerClusterId: 1,
    disableShared: false,
    os: 'linux',
    platform: 'debian',
    ...extra,
  };
}

const PATHS: Record<PeerState, PeerState[]> = {
  Pending: [],
  ReceivedEmpty: ['ReceivedEmpty'],
  ReceivedNormal: ['ReceivedNormal'],
  Running: ['ReceivedNormal', 'Running'],
  BackToSource: ['BackToSource'],
  Succeeded: ['BackToSource', 'Succeeded'],
  Failed: ['Failed'],
  Leave: ['Leave'],
};

/** A registry with a world builder: hosts by id, peers of one task in a given state. */
export class World {
  readonly r = new Resources();
  constructor(readonly now: () => number = () => 1_000_000) {}

  host(id: string, extra: Partial<HostInfo> = {}): this {
    this.r.hosts.announce(hostInfo(id, extra), 0, this.now());
    return this;
  }

  peer(id: string, hostId: string, state: PeerState, taskId = 't1', pieces = 0): Peer {
    const task = this.r.tasks.getOrCreate(taskId, { url: 'http://127.0.0.1/x', tag: '', application: '', filteredQueryParams: [] }, this.now());
    if (!this.r.hosts.get(hostId)) this.host(hostId);
    const p = this.r.createPeer(id, task, hostId, this.now());
    p.stream = { send() {} };
    for (const s of PATHS[state]) p.transition(s, this.now());
    if (state === 'BackToSource') task.backToSourcePeers.add(id);
    for (let i = 0; i < pieces; i++) p.finishedPieces.add(i);
    p.lastPieceAt = this.now();
    return p;
  }
}
