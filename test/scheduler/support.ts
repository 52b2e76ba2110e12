/**
 * Test helpers that speak the real protocol over real gRPC: a simulated agent is a grpc-js client of
 * the Scheduler service (and, for seed peers, a real Dfdaemon server). Nothing here replaces code we ship.
 */
import * as grpc from '@grpc/grpc-js';
import { loadProto } from '../../scheduler/protocol/loader.js';

type Msg = Record<string, any>;

export function schedulerClient(address: string): grpc.Client & Record<string, any> {
  const { Scheduler } = loadProto();
  return new Scheduler(address, grpc.credentials.createInsecure()) as grpc.Client & Record<string, any>;
}

export function unaryCall<T = Msg>(client: Record<string, any>, method: string, req: Msg): Promise<T> {
  return new Promise((resolve, reject) => client[method](req, (err: grpc.ServiceError | null, res: T) => (err ? reject(err) : resolve(res))));
}

export function hostMsg(id: string, extra: Msg = {}): Msg {
  return { id, type: 'NORMAL', hostname: id, ip: '127.0.0.1', port: 1, download_port: 2, ...extra };
}

/** One AnnouncePeer stream of one simulated peer, with a queue of what the scheduler sent. */
export class SimPeer {
  readonly call: grpc.ClientDuplexStream<Msg, Msg>;
  private readonly inbox: Msg[] = [];
  private waiters: (() => void)[] = [];
  status: grpc.StatusObject | undefined;
  error: grpc.ServiceError | undefined;
  ended = false;

  constructor(
    client: Record<string, any>,
    readonly hostId: string,
    readonly taskId: string,
    readonly peerId: string,
  ) {
    this.call = client.AnnouncePeer();
    this.call.on('data', (m: Msg) => this.push(m));
    this.call.on('error', (e: grpc.ServiceError) => {
      this.error = e;
      this.wake();
    });
    this.call.on('status', (s: grpc.StatusObject) => {
      this.status = s;
      this.wake();
    });
    this.call.on('end', () => {
      this.ended = true;
      this.wake();
    });
  }

  private push(m: Msg): void {
    this.inbox.push(m);
    this.wake();
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  send(kind: string, body: Msg = {}): void {
    this.call.write({ host_id: this.hostId, task_id: this.taskId, peer_id: this.peerId, [kind]: body });
  }

  register(download: Msg = {}): void {
    this.send('register_peer_request', { download: { url: 'http://127.0.0.1:1/file', ...download } });
  }

  /** The next message whose oneof is `kind` (others of `skip` kinds are dropped), within `ms`. */
  async next(kind?: string, ms = 3000, skip: string[] = ['task_pieces_response']): Promise<Msg> {
    const deadline = Date.now() + ms;
    for (;;) {
      while (this.inbox.length > 0) {
        const m = this.inbox.shift()!;
        if (!kind || m.response === kind) return m;
        if (!skip.includes(m.response)) throw new Error(`expected ${kind}, got ${m.response}: ${JSON.stringify(m)}`);
      }
      if (this.error) throw this.error;
      if (this.ended) throw new Error(`stream ended waiting for ${kind}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out waiting for ${kind ?? 'a message'}`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  /** Resolves with the stream's final error (status), or undefined if it ended OK, within `ms`. */
  async closed(ms = 3000): Promise<grpc.ServiceError | undefined> {
    const deadline = Date.now() + ms;
    while (!this.error && !this.status) {
      const left = deadline - Date.now();
      if (left <= 0) throw new Error('stream did not close');
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
    return this.error;
  }

  /** Messages received and not yet taken. */
  drain(): Msg[] {
    return this.inbox.splice(0);
  }
}
