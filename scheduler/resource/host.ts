/**
 * A host as the scheduler knows it: what the agent announced, plus the scheduler's own
 * bookkeeping of how busy the host is as a parent.
 */
export type HostType = 'NORMAL' | 'SUPER_SEED' | 'STRONG_SEED' | 'WEAK_SEED';

/** The announced fields (proto Host, camelCase). */
export interface HostInfo {
  id: string;
  type: HostType;
  hostname: string;
  ip: string;
  port: number;
  downloadPort: number;
  idc: string;
  location: string;
  maxTxBandwidth: number;
  uploadLimit: number;
  concurrentUploadCount: number;
  proxyPort: number;
  schedulerClusterId: number;
  disableShared: boolean;
  os: string;
  platform: string;
}

/** Upload slots assumed when a host announces upload_limit 0 (Dragonfly's defaults). */
export const DEFAULT_UPLOAD_LIMIT = { normal: 200, seed: 2000 } as const;

export class Host {
  info: HostInfo;
  /** Parent edges this host currently serves (DAG edges where one of its peers is the parent). */
  concurrentUploadCount = 0;
  /** Pieces children reported as received from this host / failed from this host. */
  uploadCount = 0;
  uploadFailedCount = 0;
  /** Bytes of the pieces children reported as received from this host's peers / this host's peers received (peers and origin). */
  bytesServed = 0;
  bytesReceived = 0;
  /** How often the agent says it re-announces; 0 = unknown. */
  announceIntervalMs = 0;
  lastAnnounce: number;
  readonly createdAt: number;
  /** Peers on this host, by id. */
  readonly peers = new Set<string>();
  /**
   * Bumped whenever this host's upload load may have changed (a child edge of one of its peers
   * added or removed, a child's parent count changed, one of its peers changed state or a child of a
   * finished one progressed, a re-announce): load.ts hostLoad recomputes only then.
   */
  loadEpoch = 0;
  loadCacheEpoch = -1;
  loadCache = 0;

  constructor(info: HostInfo, now: number) {
    this.info = info;
    this.lastAnnounce = now;
    this.createdAt = now;
  }

  get id(): string {
    return this.info.id;
  }

  get isSeed(): boolean {
    return this.info.type !== 'NORMAL';
  }

  /** Upload slots the host offers as a parent. */
  get uploadLimit(): number {
    if (this.info.uploadLimit > 0) return this.info.uploadLimit;
    return this.isSeed ? DEFAULT_UPLOAD_LIMIT.seed : DEFAULT_UPLOAD_LIMIT.normal;
  }

  /** Free upload slots: the limit minus the children currently assigned to this host. */
  get freeUploadCount(): number {
    return Math.max(0, this.uploadLimit - this.concurrentUploadCount);
  }

  /** Share of the pieces uploaded by this host that children received (1 with no history). */
  get uploadSuccessRatio(): number {
    return (this.uploadCount + 1) / (this.uploadCount + this.uploadFailedCount + 1);
  }
}
