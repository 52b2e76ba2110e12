/**
 * The download side of the agent ↔ agent piece protocol (agent/piece-server.ts): GET one piece from
 * a parent and read its body straight into the caller's buffer.
 *
 *   const client = new PieceClient('127.0.0.1', 4005, { connections: 9 });
 *   const r = await client.get(`/v1/tasks/${id}/pieces/${n}`, dest, { signal, onData });
 *   // r.status 200: dest[0, r.length) holds the body; r.headers are lower-cased
 *   client.close();
 *
 * HTTP/1.1 keep-alive on plain sockets, one request per connection at a time. Why not undici, which
 * the agent uses for everything else: its parser copies every received chunk into WebAssembly memory
 * and the body back out into a fresh Buffer, so each piece byte was copied three times into memory
 * that had to be faulted in and later collected. Here the socket reads (net's `onread` with a caller
 * supplied buffer) land in `dest`, which the caller reuses (storage/store.ts BufferPool): the kernel's
 * copy is the only one. On bench:swarm the agents spent most of their CPU on those copies, faults
 * and collections.
 *
 * With mTLS, a full handshake costs both ends about 9 ms of CPU here (OpenSSL 3, RSA 2048 on both
 * sides, and node building the peer certificate object for checkServerIdentity): each client keeps
 * the parent's latest session ticket (per client context, so a renewed certificate starts afresh)
 * and resumes with it, which halves that; and connections to a parent open one at a time until a
 * ticket is in hand, so a task's first burst of connections costs one full handshake, not nine.
 *
 * Only what the piece server sends is understood: a status line, headers, and a body framed by
 * Content-Length (no chunked encoding, no pipelining, no 1xx). Anything else is a protocol error.
 */
import net from 'node:net';
import tls from 'node:tls';
import { TimeoutError, UnavailableError } from '../adapters/errors.js';

export interface PieceResponse {
  status: number;
  /** Header names lower-cased; repeated headers keep the last value. */
  headers: Record<string, string>;
  /** Body bytes written into the destination (0 for a non-200 answer: its body is discarded). */
  length: number;
}

/**
 * Where a 200's body goes: a buffer, or a function asked for one once the answer is known to be a
 * 200 of `length` bytes (so a 404 or 429 takes no buffer). It must return at least `length` bytes.
 */
export type Destination = Buffer | ((length: number) => Buffer);

export interface GetOptions {
  signal?: AbortSignal;
  /**
   * Called after each read of body bytes into `dest` (`from` = where they start, `n` = how many).
   * A positive return value pauses reading from the socket for that many milliseconds (a download
   * rate limiter's wait).
   */
  onData?: (from: number, n: number) => number | void;
  /** Extra request headers (trace context). */
  headers?: Record<string, string>;
}

/** Longest a connection waits for another's first session ticket before a full handshake of its own. */
const TICKET_WAIT_MS = 1_000;
/** Largest status line + headers accepted. */
const MAX_HEAD = 16 * 1024;
const HEAD_END = Buffer.from('\r\n\r\n');

class ProtocolError extends UnavailableError {}

/**
 * TLS 1.3 session tickets by client context and parent (`host:port`). A ticket only lets a client
 * that completed a full mutual handshake with that parent skip the certificate exchange for the
 * ticket's lifetime (the piece server's default, 300 s). A WeakMap: a context replaced on renewal
 * takes its tickets with it.
 */
const tickets = new WeakMap<tls.SecureContext, Map<string, Buffer>>();
const MAX_TICKETS = 1024;
function ticketsOf(ctx: tls.SecureContext): Map<string, Buffer> {
  let m = tickets.get(ctx);
  if (!m) tickets.set(ctx, (m = new Map()));
  return m;
}

/** One keep-alive connection to a piece server. */
class Conn {
  readonly socket: net.Socket | tls.TLSSocket;
  private readonly scratch = Buffer.allocUnsafe(MAX_HEAD);
  private state: 'connecting' | 'idle' | 'head' | 'body' | 'discard' | 'closed' = 'connecting';
  private headLen = 0;
  private dest: Buffer = this.scratch;
  private destFor?: (length: number) => Buffer;
  private expected = 0;
  private got = 0;
  private res?: PieceResponse;
  private current?: { resolve: (r: PieceResponse) => void; reject: (e: Error) => void; opts: GetOptions; gotBytes: boolean };
  private pauseTimer?: NodeJS.Timeout;
  /** Whether the server asked to close the connection after this response. */
  private closeAfter = false;
  /** Responses completed on this connection (a request on a reused one may meet a server-side close). */
  uses = 0;
  onIdle?: (c: Conn) => void;
  onClosed?: (c: Conn) => void;
  readonly ready: Promise<void>;
  /** mTLS without a known ticket: settles when this connection receives one, or fails/closes. */
  ticket?: Promise<void>;

  constructor(host: string, port: number, secureContext?: tls.SecureContext) {
    const onread = { buffer: () => this.readTarget(), callback: (n: number) => this.onRead(n) };
    // With mTLS, node:tls decrypts into the same caller-supplied buffers (its `onread`), so the
    // one-copy read path holds; the parent's certificate is checked against the cluster CA.
    if (secureContext) {
      const known = ticketsOf(secureContext);
      const key = `${host}:${port}`;
      const session = known.get(key);
      const socket = tls.connect({ host, port, noDelay: true, secureContext, checkServerIdentity: () => undefined, onread, ...(session ? { session } : {}) } as tls.ConnectionOptions);
      socket.on('session', (ticket: Buffer) => {
        known.delete(key); // re-inserted last: the oldest parent is dropped first
        if (known.size >= MAX_TICKETS) known.delete(known.keys().next().value!);
        known.set(key, ticket);
      });
      if (!session) this.ticket = new Promise<void>((resolve) => {
        socket.once('session', () => resolve());
        socket.once('close', () => resolve());
      });
      this.socket = socket;
    } else this.socket = net.connect({ host, port, noDelay: true, onread });
    // Settles on connect, or on the first error or close before it (a client closed while this
    // connection was still connecting destroys the socket without an error).
    this.ready = new Promise((resolve, reject) => {
      this.socket.once(secureContext ? 'secureConnect' : 'connect', () => {
        if (this.state === 'connecting') this.state = 'idle';
        resolve();
      });
      this.socket.once('error', reject);
      this.socket.once('close', () => reject(new UnavailableError('connection closed before it was established')));
    });
    this.ready.catch(() => undefined);
    this.socket.on('error', (err) => this.fail(new UnavailableError(`piece connection: ${err.message}`, { cause: err })));
    this.socket.on('end', () => this.fail(new UnavailableError('parent closed the connection')));
    this.socket.on('close', () => {
      this.fail(new UnavailableError('parent closed the connection'));
      this.onClosed?.(this);
    });
  }

  get busy(): boolean {
    return this.current !== undefined;
  }
  get closed(): boolean {
    return this.state === 'closed';
  }

  /** Where the next socket read lands: the rest of the body in `dest`, else the head buffer. */
  private readTarget(): Buffer {
    if (this.state === 'body') return this.dest.subarray(this.got, this.expected);
    if (this.state === 'head') return this.scratch.subarray(this.headLen);
    return this.scratch;
  }

  request(path: string, dest: Destination, opts: GetOptions): Promise<PieceResponse> {
    if (this.busy || this.state !== 'idle') return Promise.reject(new UnavailableError('piece connection is not idle'));
    return new Promise<PieceResponse>((resolve, reject) => {
      this.current = { resolve, reject, opts, gotBytes: false };
      this.dest = typeof dest === 'function' ? this.scratch : dest;
      this.destFor = typeof dest === 'function' ? dest : undefined;
      this.headLen = 0;
      this.got = 0;
      this.expected = 0;
      this.res = undefined;
      this.state = 'head';
      const signal = opts.signal;
      if (signal) {
        if (signal.aborted) return this.fail(abortError(signal));
        const onAbort = () => this.fail(abortError(signal));
        signal.addEventListener('abort', onAbort, { once: true });
        const settle = <T>(f: (v: T) => void) => (v: T) => {
          signal.removeEventListener('abort', onAbort);
          f(v);
        };
        this.current.resolve = settle(resolve);
        this.current.reject = settle(reject);
      }
      const extra = opts.headers ? Object.entries(opts.headers).map(([k, v]) => `${k}: ${v}\r\n`).join('') : '';
      this.socket.write(`GET ${path} HTTP/1.1\r\nHost: piece\r\nAccept: application/octet-stream\r\n${extra}\r\n`, 'latin1');
    });
  }

  private onRead(n: number): boolean {
    const cur = this.current;
    if (!cur) {
      this.fail(new ProtocolError('parent sent bytes nobody asked for'));
      return false;
    }
    cur.gotBytes = true;
    if (this.state === 'head') {
      this.headLen += n;
      const end = this.scratch.subarray(0, this.headLen).indexOf(HEAD_END);
      if (end < 0) {
        if (this.headLen >= MAX_HEAD) this.fail(new ProtocolError(`response head larger than ${MAX_HEAD} bytes`));
        return true;
      }
      const res = parseHead(this.scratch.toString('latin1', 0, end));
      if (!res) {
        this.fail(new ProtocolError('malformed response head'));
        return false;
      }
      const cl = res.headers['content-length'];
      const framed = cl !== undefined && /^\d+$/.test(cl) && res.headers['transfer-encoding'] === undefined;
      if (res.status !== 200 && !framed) {
        // A 404/429 without a length (chunked, or to be read until close): the status is all that
        // matters; the connection is not reused rather than parse a body nobody reads.
        this.res = res;
        this.closeAfter = true;
        this.expected = 0;
        this.got = 0;
        this.state = 'discard';
        return this.maybeDone();
      }
      if (!framed) {
        this.fail(new ProtocolError('response without a Content-Length'));
        return false;
      }
      this.closeAfter = (res.headers.connection ?? '').toLowerCase() === 'close';
      this.res = res;
      this.expected = Number(cl);
      const extra = this.scratch.subarray(end + HEAD_END.length, this.headLen);
      if (res.status === 200) {
        if (this.destFor) {
          this.dest = this.destFor(this.expected);
          this.destFor = undefined;
        }
        if (this.expected > this.dest.length) {
          this.fail(new ProtocolError(`body of ${this.expected} bytes does not fit the ${this.dest.length} expected`));
          return false;
        }
        if (extra.length > this.expected) {
          this.fail(new ProtocolError('parent sent more bytes than its Content-Length'));
          return false;
        }
        extra.copy(this.dest, 0);
        this.got = extra.length;
        this.state = 'body';
        if (extra.length > 0) return this.delivered(0, extra.length);
        return this.maybeDone();
      }
      // A 404/429 and the like: its (small) body is read and dropped.
      this.dest = this.scratch;
      this.got = extra.length;
      this.state = 'discard';
      return this.maybeDone();
    }
    if (this.state === 'body') {
      const from = this.got;
      this.got += n;
      return this.delivered(from, n);
    }
    if (this.state === 'discard') {
      this.got += n;
      return this.maybeDone();
    }
    return true;
  }

  private delivered(from: number, n: number): boolean {
    const wait = this.current?.opts.onData?.(from, n);
    if (this.got >= this.expected) return this.maybeDone();
    if (typeof wait === 'number' && wait > 0) {
      this.pauseTimer = setTimeout(() => {
        this.pauseTimer = undefined;
        if (this.state !== 'closed') this.socket.resume();
      }, wait);
      return false;
    }
    return true;
  }

  private maybeDone(): boolean {
    if (this.got < this.expected) return true;
    if (this.got > this.expected) {
      this.fail(new ProtocolError('parent sent more bytes than its Content-Length'));
      return false;
    }
    const cur = this.current!;
    const res = this.res!;
    if (res.status === 200) res.length = this.got;
    this.current = undefined;
    this.dest = this.scratch;
    this.uses++;
    if (this.closeAfter) this.destroy();
    else this.state = 'idle';
    cur.resolve(res);
    if (!this.closed) this.onIdle?.(this);
    return true;
  }

  /** Ends the request under way (if any) with `err` and closes the connection. */
  fail(err: Error): void {
    const cur = this.current;
    this.current = undefined;
    this.destroy();
    if (cur) {
      // A reused connection the server closed before answering: the caller may retry on a new one.
      (err as Error & { retryable?: boolean }).retryable = !cur.gotBytes && this.uses > 0 && !(err instanceof TimeoutError) && err.name !== 'AbortError';
      cur.reject(err);
    }
  }

  destroy(): void {
    if (this.state === 'closed') return;
    this.state = 'closed';
    clearTimeout(this.pauseTimer);
    this.dest = this.scratch;
    this.socket.destroy();
  }
}

function abortError(signal: AbortSignal): Error {
  const r = signal.reason as Error | undefined;
  if (r && r.name === 'TimeoutError') return new TimeoutError('piece request timed out');
  if (r instanceof Error) return r;
  const e = new Error('piece request aborted');
  e.name = 'AbortError';
  return e;
}

function raceSignal<T>(p: Promise<T>, signal?: AbortSignal): Promise<T> {
  if (!signal) return p;
  if (signal.aborted) return Promise.reject(abortError(signal));
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(abortError(signal));
    signal.addEventListener('abort', onAbort, { once: true });
    p.then(
      (v) => {
        signal.removeEventListener('abort', onAbort);
        resolve(v);
      },
      (e: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(e as Error);
      },
    );
  });
}

/** Parses "HTTP/1.1 200 OK\r\nName: value\r\n..." (no trailing blank line); undefined when malformed. */
export function parseHead(head: string): PieceResponse | undefined {
  const lines = head.split('\r\n');
  const m = /^HTTP\/1\.[01] (\d{3})(?: .*)?$/.exec(lines[0] ?? '');
  if (!m) return undefined;
  const headers: Record<string, string> = {};
  for (let i = 1; i < lines.length; i++) {
    const line = lines[i]!;
    const colon = line.indexOf(':');
    if (colon <= 0) return undefined;
    headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
  }
  return { status: Number(m[1]), headers, length: 0 };
}

/**
 * Connections to one parent's piece server: at most `connections` at once, idle ones reused, kept
 * `keepAliveMs` (the server keeps them 30 s).
 */
export class PieceClient {
  private readonly idle: Conn[] = [];
  private readonly all = new Set<Conn>();
  private readonly waiting: Array<(c: Conn | Error) => void> = [];
  private closed = false;
  private reaper?: NodeJS.Timeout;
  private lastUse = new Map<Conn, number>();
  /** A connection getting the parent's first session ticket: further connections wait for it (or TICKET_WAIT_MS). */
  private ticketWait?: Promise<void>;

  constructor(
    private readonly host: string,
    private readonly port: number,
    private readonly opts: { connections: number; keepAliveMs?: number; /** mTLS: the identity's current client context (read per connection, so renewals apply). */ tls?: () => tls.SecureContext | undefined },
  ) {}

  /**
   * GETs `path` and reads a 200's body into `dest` (which must be large enough: a larger body is a
   * protocol error; a function is called at most once per attempt). Resolves with any status; rejects with UnavailableError (connection or
   * protocol failure), TimeoutError or the signal's reason.
   */
  async get(path: string, dest: Destination, opts: GetOptions = {}): Promise<PieceResponse> {
    for (let attempt = 0; ; attempt++) {
      const conn = await this.acquire(opts.signal);
      try {
        return await conn.request(path, dest, opts);
      } catch (err) {
        if ((err as { retryable?: boolean }).retryable && attempt === 0 && !this.closed) continue;
        throw err;
      }
    }
  }

  private async acquire(signal?: AbortSignal): Promise<Conn> {
    if (this.closed) throw new UnavailableError('piece client closed');
    for (;;) {
      const c = this.idle.pop();
      if (!c) break;
      if (!c.closed && !c.busy) return c;
    }
    if (this.ticketWait && this.all.size < this.opts.connections) {
      // One full handshake, then resumptions: wait for the first connection's ticket, then look again.
      await raceSignal(this.ticketWait, signal).catch(() => undefined);
      if (signal?.aborted) throw abortError(signal);
      return this.acquire(signal);
    }
    if (this.all.size < this.opts.connections) {
      const c = this.open();
      try {
        await raceSignal(c.ready, signal);
      } catch (err) {
        c.destroy();
        if (signal?.aborted) throw abortError(signal);
        throw new UnavailableError(`cannot connect to parent ${this.host}:${this.port}: ${(err as Error).message}`, { cause: err });
      }
      return c;
    }
    return new Promise<Conn>((resolve, reject) => {
      const onAbort = () => {
        const i = this.waiting.indexOf(take);
        if (i >= 0) this.waiting.splice(i, 1);
        reject(signal ? abortError(signal) : new UnavailableError('aborted'));
      };
      const take = (c: Conn | Error) => {
        signal?.removeEventListener('abort', onAbort);
        if (c instanceof Error) reject(c);
        else resolve(c);
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.waiting.push(take);
    });
  }

  private open(): Conn {
    const c = new Conn(this.host, this.port, this.opts.tls?.());
    this.all.add(c);
    if (c.ticket && !this.ticketWait) {
      let timer: NodeJS.Timeout | undefined;
      const wait = Promise.race([c.ticket, new Promise<void>((r) => (timer = setTimeout(r, TICKET_WAIT_MS)))]).finally(() => {
        clearTimeout(timer);
        if (this.ticketWait === wait) this.ticketWait = undefined;
      });
      this.ticketWait = wait;
    }
    c.onIdle = (conn) => this.release(conn);
    c.onClosed = (conn) => {
      this.all.delete(conn);
      this.lastUse.delete(conn);
      const i = this.idle.indexOf(conn);
      if (i >= 0) this.idle.splice(i, 1);
      // A slot freed up: a waiter gets a fresh connection.
      const w = this.waiting.shift();
      if (w) {
        if (this.closed) w(new UnavailableError('piece client closed'));
        else {
          const fresh = this.open();
          fresh.ready.then(
            () => w(fresh),
            (err: Error) => w(new UnavailableError(`cannot connect to parent ${this.host}:${this.port}: ${err.message}`, { cause: err })),
          );
        }
      }
    };
    return c;
  }

  private release(c: Conn): void {
    const w = this.waiting.shift();
    if (w) {
      w(c);
      return;
    }
    this.idle.push(c);
    this.lastUse.set(c, Date.now());
    this.reaper ??= setInterval(() => this.reap(), 1_000).unref();
  }

  private reap(): void {
    const keep = this.opts.keepAliveMs ?? 10_000;
    const now = Date.now();
    for (const c of [...this.idle]) {
      if (now - (this.lastUse.get(c) ?? now) > keep) c.destroy();
    }
    if (this.all.size === 0 && this.reaper) {
      clearInterval(this.reaper);
      this.reaper = undefined;
    }
  }

  /** Closes every connection; requests under way fail with UnavailableError. */
  close(): void {
    this.closed = true;
    if (this.reaper) clearInterval(this.reaper);
    for (const w of this.waiting.splice(0)) w(new UnavailableError('piece client closed'));
    for (const c of [...this.all]) c.fail(new UnavailableError('piece client closed'));
  }
}
