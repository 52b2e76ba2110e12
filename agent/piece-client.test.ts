import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { TimeoutError, UnavailableError } from '../adapters/errors.js';
import { parseHead, PieceClient } from './piece-client.js';

/**
 * A raw TCP server whose answer to each request is scripted, so the client meets exactly the byte
 * layouts it must handle (split heads, head and body in one segment, chunked errors, early closes).
 */
interface Scripted {
  port: number;
  connections: number;
  requests: string[];
  close(): Promise<void>;
}
type Answer = (sock: net.Socket, req: string, n: number) => void | Promise<void>;

const servers: Scripted[] = [];
const clients: PieceClient[] = [];
afterEach(async () => {
  for (const c of clients.splice(0)) c.close();
  await Promise.all(servers.splice(0).map((s) => s.close()));
});

async function scripted(answer: Answer): Promise<Scripted> {
  const socks = new Set<net.Socket>();
  const st: Scripted = { port: 0, connections: 0, requests: [], close: async () => undefined };
  const server = net.createServer((sock) => {
    st.connections++;
    socks.add(sock);
    sock.on('close', () => socks.delete(sock));
    sock.on('error', () => undefined);
    let buf = '';
    sock.on('data', (d) => {
      buf += d.toString('latin1');
      let i: number;
      while ((i = buf.indexOf('\r\n\r\n')) >= 0) {
        const req = buf.slice(0, i);
        buf = buf.slice(i + 4);
        st.requests.push(req);
        void answer(sock, req, st.requests.length);
      }
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  st.port = (server.address() as net.AddressInfo).port;
  st.close = () =>
    new Promise<void>((r) => {
      for (const s of socks) s.destroy();
      server.close(() => r());
    });
  servers.push(st);
  return st;
}

function client(port: number, connections = 2): PieceClient {
  const c = new PieceClient('127.0.0.1', port, { connections });
  clients.push(c);
  return c;
}

const body = (n: number, seed = 7): Buffer => Buffer.from(Array.from({ length: n }, (_, i) => (i * 31 + seed) & 0xff));
const ok = (b: Buffer): Buffer => Buffer.concat([Buffer.from(`HTTP/1.1 200 OK\r\nContent-Length: ${b.length}\r\nX-Damselfly-Piece-Digest: sha256:ab\r\n\r\n`), b]);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('PieceClient', () => {
  it('reads a 200 body into the destination, whatever way the bytes are split', async () => {
    const data = body(300_000);
    const srv = await scripted(async (sock, _req, n) => {
      const wire = ok(data);
      if (n === 1) sock.write(wire); // head and body in one write
      else {
        // head byte by byte, then the body in uneven pieces
        const head = wire.length - data.length;
        for (let i = 0; i < head; i++) {
          sock.write(wire.subarray(i, i + 1));
          await sleep(0);
        }
        for (let off = head; off < wire.length; off += 77_777) {
          sock.write(wire.subarray(off, Math.min(off + 77_777, wire.length)));
          await sleep(1);
        }
      }
    });
    const c = client(srv.port);
    for (let i = 0; i < 2; i++) {
      const dest = Buffer.alloc(data.length);
      const r = await c.get('/v1/tasks/x/pieces/0', dest);
      expect(r.status).toBe(200);
      expect(r.length).toBe(data.length);
      expect(r.headers['x-damselfly-piece-digest']).toBe('sha256:ab');
      expect(dest.equals(data)).toBe(true);
    }
    // keep-alive: both requests went over one connection
    expect(srv.connections).toBe(1);
    expect(srv.requests[0]).toMatch(/^GET \/v1\/tasks\/x\/pieces\/0 HTTP\/1\.1\r\n/);
  });

  it('takes the destination only for a 200, of the announced length', async () => {
    const data = body(1000);
    const srv = await scripted((sock, _req, n) => {
      if (n === 1) sock.write('HTTP/1.1 429 Too Many Requests\r\nRetry-After: 1\r\nContent-Length: 0\r\n\r\n');
      else sock.write(ok(data));
    });
    const c = client(srv.port);
    const asked: number[] = [];
    const dest = () => {
      const b = Buffer.alloc(4096);
      asked.push(b.length);
      return b;
    };
    expect((await c.get('/p', (len) => (asked.push(len), dest()))).status).toBe(429);
    expect(asked).toEqual([]);
    let got: Buffer | undefined;
    const r = await c.get('/p', (len) => {
      asked.push(len);
      return (got = Buffer.alloc(len));
    });
    expect(r.status).toBe(200);
    expect(asked).toEqual([1000]);
    expect(got!.equals(data)).toBe(true);
    expect(srv.connections).toBe(1); // the 429 (with a length) left the connection reusable
  });

  it('an error answer without a Content-Length (chunked) gives its status and a fresh connection next time', async () => {
    const data = body(10);
    const srv = await scripted((sock, _req, n) => {
      if (n === 1) sock.write('HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nnope!\r\n0\r\n\r\n');
      else sock.write(ok(data));
    });
    const c = client(srv.port);
    expect((await c.get('/p', Buffer.alloc(10))).status).toBe(404);
    const dest = Buffer.alloc(10);
    expect((await c.get('/p', dest)).status).toBe(200);
    expect(dest.equals(data)).toBe(true);
    expect(srv.connections).toBe(2);
  });

  it('rejects a body larger than the destination, a 200 without a length, and bytes beyond the length', async () => {
    const srv = await scripted((sock, req) => {
      if (req.includes('/big')) sock.write(ok(body(100)));
      else if (req.includes('/nolen')) sock.end('HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nxxxx');
      else sock.write(Buffer.concat([ok(body(8)), Buffer.from('extra')]));
    });
    const c = client(srv.port, 4);
    await expect(c.get('/big', Buffer.alloc(50))).rejects.toThrow(/does not fit/);
    await expect(c.get('/nolen', Buffer.alloc(50))).rejects.toThrow(/Content-Length/);
    await expect(c.get('/extra', Buffer.alloc(8))).rejects.toThrow(/more bytes|nobody asked/);
  });

  it('retries once on a new connection when the server closed an idle keep-alive connection', async () => {
    const data = body(64);
    const srv = await scripted((sock, _req, n) => {
      if (n === 1) {
        sock.write(ok(data));
        return;
      }
      // the reused connection: the server "timed it out" just as the request arrived
      if (srv.connections === 1) sock.destroy();
      else sock.write(ok(data));
    });
    const c = client(srv.port);
    expect((await c.get('/p', Buffer.alloc(64))).status).toBe(200);
    const dest = Buffer.alloc(64);
    expect((await c.get('/p', dest)).status).toBe(200);
    expect(dest.equals(data)).toBe(true);
    expect(srv.connections).toBe(2);
  });

  it('a parent dying mid-body fails the request (no retry: bytes had arrived)', async () => {
    const srv = await scripted((sock) => {
      const wire = ok(body(10_000));
      sock.write(wire.subarray(0, 5_000));
      setTimeout(() => sock.destroy(), 20);
    });
    const c = client(srv.port);
    const err = await c.get('/p', Buffer.alloc(10_000)).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UnavailableError);
    expect(srv.connections).toBe(1);
  });

  it('a stalled body ends with TimeoutError at the signal', async () => {
    const srv = await scripted((sock) => void sock.write(ok(body(10_000)).subarray(0, 100)));
    const c = client(srv.port);
    const t0 = performance.now();
    const err = await c.get('/p', Buffer.alloc(10_000), { signal: AbortSignal.timeout(200) }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TimeoutError);
    expect(performance.now() - t0).toBeGreaterThanOrEqual(150);
  });

  it('close() while a connection is still being set up fails the request instead of leaving it hanging', async () => {
    const srv = await scripted((sock) => void sock.write(ok(body(4))));
    const c = client(srv.port);
    const p = c.get('/p', Buffer.alloc(4));
    c.close();
    await expect(p).rejects.toBeInstanceOf(UnavailableError);
  });

  it('a refused connection is an UnavailableError naming the parent', async () => {
    const srv = await scripted(() => undefined);
    const port = srv.port;
    await srv.close();
    servers.length = 0;
    await expect(client(port).get('/p', Buffer.alloc(4))).rejects.toThrow(new RegExp(`cannot connect to parent 127.0.0.1:${port}`));
  });

  it('more requests than connections wait their turn and all complete', async () => {
    const srv = await scripted(async (sock, req) => {
      await sleep(10);
      sock.write(ok(body(1000, Number(/pieces\/(\d+)/.exec(req)![1]))));
    });
    const c = client(srv.port, 2);
    const dests = Array.from({ length: 6 }, () => Buffer.alloc(1000));
    const rs = await Promise.all(dests.map((d, i) => c.get(`/v1/tasks/x/pieces/${i}`, d)));
    expect(rs.every((r) => r.status === 200)).toBe(true);
    dests.forEach((d, i) => expect(d.equals(body(1000, i))).toBe(true));
    expect(srv.connections).toBe(2);
  });

  it('pauses reading for the wait onData returns (a download rate limit)', async () => {
    const data = body(1 << 20);
    const srv = await scripted((sock) => void sock.write(ok(data)));
    const c = client(srv.port);
    const dest = Buffer.alloc(data.length);
    let seen = 0;
    const waits: number[] = [];
    const t0 = performance.now();
    // 64 KiB per 20 ms (3.2 MiB/s). The wait after the last read is not paused for: the body is
    // complete; a token bucket carries that debt into the next request.
    const r = await c.get('/p', dest, {
      onData: (from, n) => {
        expect(from).toBe(seen);
        seen += n;
        waits.push((n / 65536) * 20);
        return waits[waits.length - 1];
      },
    });
    expect(r.status).toBe(200);
    expect(seen).toBe(data.length);
    expect(dest.equals(data)).toBe(true);
    expect(waits.length).toBeGreaterThan(1);
    const paused = waits.slice(0, -1).reduce((a, b) => a + b, 0);
    expect(paused).toBeGreaterThan(0);
    expect(performance.now() - t0).toBeGreaterThanOrEqual(paused - 5);
  });
});

describe('parseHead', () => {
  it('parses the status and lower-cases header names; rejects what is not HTTP/1.x', () => {
    expect(parseHead('HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A:  b ')).toEqual({ status: 200, headers: { 'content-length': '5', 'x-a': 'b' }, length: 0 });
    expect(parseHead('HTTP/1.0 404')?.status).toBe(404);
    expect(parseHead('HTTP/2 200 OK')).toBeUndefined();
    expect(parseHead('HTTP/1.1 200 OK\r\nno colon here')).toBeUndefined();
  });
});
