/**
 * The upload side: an HTTP/1.1 keep-alive server other agents fetch pieces from. It serves only
 * verified bytes: pieces the store lists, also of tasks still downloading, and the verified blocks of
 * a piece still arriving (agent/download/blocks.ts), within the upload rate and concurrency limits (429 when
 * saturated).
 *
 *   GET /v1/tasks/{taskId}/pieces?from=K&wait_ms=N&pv=V[&digests=1]
 *       → {taskId, contentLength, pieceLength, headers, pieces:[numbers], next, complete,
 *          partial:[numbers], partialVersion[, digests:{number: "sha256:…"}]}
 *       `digests` (asked for by a child that lost its scheduler, which relays them otherwise): the
 *       digest each listed piece was verified against here.
 *       `pieces` are the pieces finished at positions ≥ K of the order they finished in; pass `next`
 *       as the following `from`. `partial` are pieces still arriving with verified blocks to send.
 *       With nothing new (no finished piece, `partialVersion` still V), waits up to wait_ms (max 30 s).
 *   GET /v1/tasks/{taskId}/pieces/{number}  → the piece's bytes (404 unless held and verified, or
 *       arriving with a verified block); a piece still arriving is sent as its blocks are verified,
 *       and the response is cut short if it stops arriving here
 */
import { once } from 'node:events';
import http from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import type { Logger } from '../adapters/log.js';
import type { ClusterIdentity, MtlsMode } from '../adapters/tls.js';
import { pieceServed } from '../adapters/tracing.js';
import type { AgentMetrics } from './metrics.js';
import type { TokenBucket } from './ratelimit.js';
import type { PartialLease, PieceStore } from './storage/store.js';

/** Bytes written per rate-limiter grant: small enough for a smooth rate, large enough to be cheap. */
const UPLOAD_CHUNK = 256 * 1024;
const MAX_WAIT_MS = 30_000;
/** A piece still arriving that makes no progress for this long is given up (the response is cut). */
const PARTIAL_WAIT_MS = 15_000;
/**
 * Under an upload rate limit, pieces are sent one at a time at the full rate (pieces this host sent
 * fewest times first, see `admit`) instead of several at once: a piece that arrives in 1/k of the time lets its receiver
 * re-serve it sooner, and in a swarm every hop a piece makes costs one piece transfer (measured on
 * bench:swarm, 16 agents: one slot 12.6–13.0 s, two slots 13.4–13.5 s; the seed also sent fewer
 * duplicate pieces). Requests beyond the slot wait in a short queue; beyond that, 429 sends the child
 * to another holder.
 */
const LIMITED_UPLOAD_SLOTS = 1;
const LIMITED_UPLOAD_QUEUE = 2;

/** Resolves on 'drain' or 'close', removing both listeners (a loop of once() races would leak them). */
function drained(res: http.ServerResponse): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      res.off('drain', done);
      res.off('close', done);
      resolve();
    };
    res.on('drain', done);
    res.on('close', done);
  });
}

export interface PieceServer {
  port: number;
  close(): Promise<void>;
}

export async function startPieceServer(opts: { ip: string; port: number; store: PieceStore; limiter: TokenBucket; concurrentLimit: number; metrics: AgentMetrics; logger: Logger; tls?: { identity: ClusterIdentity; mode: MtlsMode } }): Promise<PieceServer> {
  const { store, limiter, metrics } = opts;
  let uploading = 0;
  let sending = 0;
  /**
   * Requests waiting for the upload slot, best first: a piece this host has sent fewer times goes
   * before one it already sent (a seed's new piece before a repeat: the swarm can re-serve the
   * repeat, only this host has the new one). A better request arriving at a full queue pushes the
   * worst one out (it gets 429 and asks another holder).
   */
  const queue: { prio: number; resolve: () => void; reject: (e: Error) => void }[] = [];
  const limited = !limiter.unlimited;
  const busy = new Error('busy');
  /** Takes the slot or a queue place; false = no place (answer 429). */
  const admit = (prio: number): Promise<void> | false => {
    if (!limited || sending < LIMITED_UPLOAD_SLOTS) {
      if (limited) sending++;
      return Promise.resolve();
    }
    if (queue.length >= LIMITED_UPLOAD_QUEUE) {
      const worst = queue[queue.length - 1]!;
      if (worst.prio <= prio) return false;
      queue.pop();
      worst.reject(busy);
    }
    return new Promise<void>((resolve, reject) => {
      let i = queue.length;
      while (i > 0 && queue[i - 1]!.prio > prio) i--;
      queue.splice(i, 0, { prio, resolve, reject });
    });
  };
  const releaseSlot = (): void => {
    if (!limited) return;
    const next = queue.shift();
    if (next) next.resolve();
    else sending--;
  };
  const onRequest = (req: http.IncomingMessage, res: http.ServerResponse): void => {
    void handle(req, res).catch((err) => {
      opts.logger.debug('piece request failed', { err: (err as Error).message });
      if (!res.headersSent) {
        res.writeHead(500).end();
      } else res.destroy();
    });
  };
  const tlsOn = opts.tls && opts.tls.mode !== 'off' ? opts.tls : undefined;
  // mTLS: the handshake refuses (required) a child without a cluster certificate before any request.
  const server = tlsOn ? https.createServer({ keepAliveTimeout: 30_000, ...tlsOn.identity.serverOptions(tlsOn.mode) }, onRequest) : http.createServer({ keepAliveTimeout: 30_000 }, onRequest);
  const offRenewal = tlsOn ? tlsOn.identity.onChange(() => (server as https.Server).setSecureContext(tlsOn.identity.serverOptions(tlsOn.mode))) : undefined;
  if (tlsOn) server.on('tlsClientError', (err) => opts.logger.debug('piece connection refused by TLS', { err: err.message }));

  async function handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://x');
    const m = /^\/v1\/tasks\/([0-9a-f]{64})\/pieces(?:\/(\d+))?$/.exec(url.pathname);
    if (req.method !== 'GET' || !m) {
      res.writeHead(404, { 'content-type': 'application/json' }).end('{"code":"NOT_FOUND"}');
      return;
    }
    const task = store.get(m[1]);
    if (m[2] === undefined) {
      const from = Math.max(0, Number(url.searchParams.get('from') ?? 0) || 0);
      const waitMs = Math.min(MAX_WAIT_MS, Math.max(0, Number(url.searchParams.get('wait_ms') ?? 0) || 0));
      if (!task) {
        res.writeHead(404, { 'content-type': 'application/json' }).end('{"code":"NOT_FOUND"}');
        return;
      }
      // `pv`: the partialVersion the child saw last; a newer one is news, answered at once.
      const pv = url.searchParams.get('pv');
      const partialNews = pv !== null && Number(pv) !== task.partialVersion;
      if (task.order.length <= from && !task.meta.complete && waitMs > 0 && !partialNews) {
        const closed = new Promise<void>((r) => res.once('close', r));
        await Promise.race([task.waitPiece(waitMs), closed]);
      }
      const body = JSON.stringify({
        taskId: task.taskId,
        contentLength: task.meta.contentLength,
        pieceLength: task.meta.pieceLength,
        headers: task.meta.responseHeaders,
        pieces: task.order.slice(from),
        next: task.order.length,
        complete: task.meta.complete,
        // Pieces still arriving here whose verified blocks can be served already (blocks.ts).
        partial: task.meta.complete ? [] : store.cache.partialPieces(task.taskId).filter((n) => !task.has(n)),
        partialVersion: task.partialVersion,
        ...(url.searchParams.get('digests') === '1' ? { digests: Object.fromEntries(task.order.slice(from).map((n) => [n, task.meta.pieces[n]])) } : {}),
      });
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) }).end(body);
      return;
    }
    const n = Number(m[2]);
    if (!task || (!task.has(n) && !store.cache.partialPieces(task.taskId).includes(n))) {
      res.writeHead(404, { 'content-length': 0 }).end();
      return;
    }
    const declineBusy = (): void => {
      metrics.uploadTaskFailureTotal.inc({ type: 'standard' });
      opts.logger.debug('piece declined: busy', { taskId: task.taskId, piece: n });
      if (!res.headersSent) res.writeHead(429, { 'retry-after': '1', 'content-length': 0 }).end();
    };
    const sent = task.uploadCounts.get(n) ?? 0;
    // While this host reads the task from the origin its upload is the swarm's bottleneck: every
    // piece goes out once (a child has it, and spreads it), and a repeat would hold back the next
    // new piece by a whole piece time. Repeats are served again once the origin read is over.
    const repeatWhileSourcing = limited && sent > 0 && task.readingFromOrigin;
    const admitted = uploading >= opts.concurrentLimit || repeatWhileSourcing ? false : admit(sent);
    if (admitted === false) {
      declineBusy();
      return;
    }
    // Counted from admission, not from the start of sending: two children asking for the same new
    // piece are one first send and one repeat, also while both wait in the queue.
    task.uploadCounts.set(n, sent + 1);
    let counted = true;
    const uncount = (): void => {
      if (!counted) return;
      counted = false;
      task.uploadCounts.set(n, Math.max(0, (task.uploadCounts.get(n) ?? 1) - 1));
    };
    uploading++;
    metrics.concurrentUploadPieceTotal.inc();
    task.inUse++;
    let slot = false;
    const t0 = Date.now();
    try {
      try {
        await admitted;
      } catch {
        uncount();
        declineBusy(); // pushed out of the queue by a better request
        return;
      }
      slot = true;
      const t1 = Date.now();
      if (res.destroyed) {
        uncount();
        return;
      }
      const key = `${task.taskId}:${n}`;
      const partial = task.has(n) ? undefined : store.cache.leasePartial(key);
      if (partial) {
        await sendPartial(res, partial, task.meta.pieces[n]);
        if (!res.destroyed) {
          opts.logger.debug('piece uploaded while arriving', { taskId: task.taskId, piece: n, queuedMs: t1 - t0, ms: Date.now() - t1 });
          metrics.uploadTraffic.inc(partial.partial.length);
          metrics.uploadTaskTotal.inc({ type: 'standard' });
          metrics.uploadPieceArrivingTotal.inc();
          pieceServed(req.headers, task.taskId, n, partial.partial.length, req.socket.remoteAddress);
        }
        return;
      }
      if (!task.has(n)) {
        uncount(); // a piece that stopped arriving here meanwhile
        res.writeHead(404, { 'content-length': 0 }).end();
        return;
      }
      const lease = await task.leasePiece(n);
      if (res.destroyed) {
        lease.release();
        return;
      }
      // The socket may still hold the bytes after the last write() returns: the lease ends with the response.
      res.once('close', lease.release);
      const chunks = lease.chunks;
      const size = chunks.reduce((a, b) => a + b.length, 0);
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': size, 'x-damselfly-piece-digest': task.meta.pieces[n] });
      for (const data of chunks) {
        for (let off = 0; off < data.length && !res.destroyed; off += UPLOAD_CHUNK) {
          const chunk = off === 0 && data.length <= UPLOAD_CHUNK ? data : data.subarray(off, Math.min(off + UPLOAD_CHUNK, data.length));
          await limiter.take(chunk.length);
          if (!res.write(chunk)) await drained(res);
        }
      }
      res.end();
      opts.logger.debug('piece uploaded', { taskId: task.taskId, piece: n, queuedMs: t1 - t0, ms: Date.now() - t1 });
      metrics.uploadTraffic.inc(size);
      metrics.uploadTaskTotal.inc({ type: 'standard' });
      pieceServed(req.headers, task.taskId, n, size, req.socket.remoteAddress);
    } finally {
      if (slot) releaseSlot();
      task.inUse--;
      uploading--;
      metrics.concurrentUploadPieceTotal.dec();
    }
  }

  /**
   * Sends a piece that is still arriving: its verified prefix at once, the rest block by block as
   * it is verified. If the piece fails here, the response is cut short (the child sees a truncated
   * body and fetches the piece elsewhere). Holds the lease until the response closes.
   */
  async function sendPartial(res: http.ServerResponse, lease: PartialLease, digest?: string): Promise<void> {
    const p = lease.partial;
    const data = lease.chunks[0]!;
    res.once('close', lease.release);
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': p.length, ...(digest ? { 'x-damselfly-piece-digest': digest } : {}) });
    let sent = 0;
    while (sent < p.length && !res.destroyed) {
      if (p.failed) {
        res.destroy();
        return;
      }
      const upto = p.verified;
      if (upto <= sent) {
        await p.changed(PARTIAL_WAIT_MS);
        if (p.verified <= sent && !p.failed) {
          res.destroy(); // the piece stopped arriving
          return;
        }
        continue;
      }
      for (let off = sent; off < upto && !res.destroyed; off += UPLOAD_CHUNK) {
        const chunk = data.subarray(off, Math.min(off + UPLOAD_CHUNK, upto));
        await limiter.take(chunk.length);
        if (!res.write(chunk)) await drained(res);
      }
      sent = upto;
    }
    if (!res.destroyed) res.end();
  }

  server.listen(opts.port, opts.ip);
  await once(server, 'listening');
  return {
    port: (server.address() as AddressInfo).port,
    close: () =>
      new Promise<void>((resolve) => {
        offRenewal?.();
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
