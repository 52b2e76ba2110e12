/**
 * `damselfly get --recursive URL -O DIR`: lists URL (an s3:// prefix, an http index page) with the
 * source port, keeps the paths --include/--exclude allow, and downloads them in parallel, each file
 * its own task through the local agent (so each is shared P2P), each written atomically
 * (cli-get.ts fetchToFile). DIR/.damselfly-get.json records every finished file with its size and
 * sha256, so a rerun skips files that are complete and still hash to what was written, and fetches
 * again what is missing, partial or changed. One overall progress line (plus the files under way)
 * on a terminal, a line per file otherwise, and a summary line at the end.
 */
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import fs from 'node:fs/promises';
import http from 'node:http';
import path from 'node:path';
import { errorMessage } from '../adapters/errors.js';
import { formatSize as fmt } from '../adapters/config.js';
import type { GetArgs, SingleFileGet } from './cli-get-args.js';
import { globToRegExp } from './glob.js';
import { safeRelativePath, type SourceEntry } from '../adapters/source/port.js';
import { sourceList } from '../adapters/source/sources.js';

export type { SingleFileGet } from './cli-get-args.js';

export const STATE_FILE = '.damselfly-get.json';
const STATE_VERSION = 1;

interface FileRecord {
  url: string;
  size: number;
  sha256: string;
}

interface State {
  version: number;
  source: string;
  files: Record<string, FileRecord>;
}

/** The entries --include (any, when given) and --exclude (none) let through. */
export function selectEntries(entries: SourceEntry[], include: string[], exclude: string[]): SourceEntry[] {
  const inc = include.map(globToRegExp);
  const exc = exclude.map(globToRegExp);
  return entries.filter((e) => (inc.length === 0 || inc.some((r) => r.test(e.path))) && !exc.some((r) => r.test(e.path)));
}

async function readState(dir: string, source: string): Promise<State> {
  try {
    const s = JSON.parse(await fs.readFile(path.join(dir, STATE_FILE), 'utf8')) as State;
    if (s.version === STATE_VERSION && s.source === source && s.files && typeof s.files === 'object') return s;
  } catch {
    /* absent or unreadable: start afresh (files are verified by hash anyway) */
  }
  return { version: STATE_VERSION, source, files: {} };
}

async function fileSha256(file: string): Promise<string> {
  const h = createHash('sha256');
  for await (const c of createReadStream(file, { highWaterMark: 1024 * 1024 })) h.update(c as Buffer);
  return 'sha256:' + h.digest('hex');
}

/** True when `file` is what the record says was written: same size, same sha256. */
async function verified(file: string, rec: FileRecord | undefined, entry: SourceEntry): Promise<boolean> {
  if (!rec || rec.url !== entry.url || (entry.size >= 0 && rec.size !== entry.size)) return false;
  const st = await fs.stat(file).catch(() => undefined);
  if (!st?.isFile() || st.size !== rec.size) return false;
  return (await fileSha256(file)) === rec.sha256;
}

/** Removes temporary files a killed earlier run left (`.NAME.damselfly-XXXXXXXX.tmp`) in `dir`. */
async function removeStaleTemps(dir: string): Promise<void> {
  const names = await fs.readdir(dir).catch(() => [] as string[]);
  await Promise.all(names.filter((n) => /^\..+\.damselfly-[0-9a-f]{8}\.tmp$/.test(n)).map((n) => fs.rm(path.join(dir, n), { force: true })));
}

function taskTraffic(socket: string, taskId: string): Promise<{ source: number; peer: number } | undefined> {
  return new Promise((resolve) => {
    const req = http.request({ socketPath: socket, path: `/v1/tasks/${taskId}` }, (res) => {
      let text = '';
      res.on('data', (c) => (text += String(c)));
      res.on('end', () => {
        try {
          resolve((JSON.parse(text) as { traffic?: { source: number; peer: number } }).traffic);
        } catch {
          resolve(undefined);
        }
      });
      res.on('error', () => resolve(undefined));
    });
    req.on('error', () => resolve(undefined));
    req.end();
  });
}

export interface RecursiveSummary {
  files: number;
  downloaded: number;
  skipped: number;
  failed: number;
  bytes: number;
  fromPeers: number;
  fromOrigin: number;
  /** Bytes the agent already held (a task it had finished before). */
  fromAgentCache: number;
  seconds: number;
}

/** Runs `get --recursive`; returns the exit code (0 all files present, 1 some failed, 2 bad usage). */
export async function getRecursive(args: GetArgs, { fetchToFile, resolveEndpoint, inSpan, traceId }: SingleFileGet): Promise<number> {
  const t0 = performance.now();
  const out = path.resolve(args.output);
  const st = await fs.stat(out).catch(() => undefined);
  if (st && !st.isDirectory()) {
    process.stderr.write(`damselfly get: -O ${out} is not a directory; --recursive writes a directory\n`);
    return 2;
  }
  try {
    await fs.mkdir(out, { recursive: true });
    await fs.access(out, fs.constants.W_OK);
  } catch (err) {
    process.stderr.write(`damselfly get: cannot write -O ${out}: ${(err as NodeJS.ErrnoException).code ?? errorMessage(err)}\n`);
    return 2;
  }
  const signal = AbortSignal.timeout(args.timeoutMs);
  const socket = resolveEndpoint(args.endpoint);
  let entries: SourceEntry[];
  try {
    entries = selectEntries(await sourceList(args.url, args.headers, signal), args.include, args.exclude);
  } catch (err) {
    process.stderr.write(`damselfly get: cannot list ${args.url}: ${signal.aborted ? 'timed out' : errorMessage(err)}\n`);
    return 1;
  }
  entries = entries.filter((e) => safeRelativePath(e.path) && e.path !== STATE_FILE);
  if (entries.length === 0) {
    process.stderr.write(`damselfly get: no file below ${args.url} matches${args.include.length ? ` --include ${args.include.join(' ')}` : ''}${args.exclude.length ? ` --exclude ${args.exclude.join(' ')}` : ''}\n`);
    return 1;
  }
  // The same prefix with or without its trailing slash is one state.
  const state = await readState(out, args.url.replace(/\/+$/, ''));
  const tty = args.progress && process.stderr.isTTY === true;
  const lines = args.progress && !tty;
  const known = entries.reduce((n, e) => n + Math.max(0, e.size), 0);
  const sum: RecursiveSummary = { files: entries.length, downloaded: 0, skipped: 0, failed: 0, bytes: 0, fromPeers: 0, fromOrigin: 0, fromAgentCache: 0, seconds: 0 };
  const current = new Map<string, { done: number; size: number }>();
  const failures: string[] = [];
  let finished = 0;
  let drawn = 0;
  const draw = (final = false) => {
    if (!tty) return;
    const inFlight = [...current.values()].reduce((n, c) => n + c.done, 0);
    const done = sum.bytes + inFlight;
    const total = Math.max(known, done);
    const pct = total > 0 ? done / total : finished / Math.max(1, entries.length);
    const bar = '#'.repeat(Math.round(pct * 30)).padEnd(30, ' ');
    const secs = Math.max((performance.now() - t0) / 1000, 1e-3);
    const rows = [`[${bar}] ${(pct * 100).toFixed(1).padStart(5)}% ${finished}/${entries.length} files ${fmt(done)}/${fmt(total)} ${fmt(done / secs)}/s`];
    if (!final) for (const [p, c] of [...current].slice(0, 8)) rows.push(`  ${p} ${fmt(c.done)}${c.size >= 0 ? '/' + fmt(c.size) : ''}`);
    let s = drawn > 0 ? `\x1b[${drawn}F` : '\r';
    for (const r of rows) s += `\x1b[2K${r}\n`;
    s += '\x1b[J';
    process.stderr.write(s);
    drawn = rows.length;
  };
  const timer = tty ? setInterval(() => draw(), 200) : undefined;
  // State writes are serialized and atomic (tmp + rename): a kill leaves the old or the new file.
  let saving: Promise<void> = Promise.resolve();
  const save = () => {
    saving = saving.then(async () => {
      const tmp = path.join(out, `.${STATE_FILE}.damselfly-${randomBytes(4).toString('hex')}.tmp`);
      await fs.writeFile(tmp, JSON.stringify(state), { mode: 0o644 });
      await fs.rename(tmp, path.join(out, STATE_FILE));
    });
    return saving;
  };
  const cleaned = new Set<string>();
  const one = async (e: SourceEntry): Promise<void> => {
    const file = path.join(out, ...e.path.split('/'));
    const dir = path.dirname(file);
    if (!cleaned.has(dir)) {
      cleaned.add(dir);
      await removeStaleTemps(dir);
    }
    if (await verified(file, state.files[e.path], e)) {
      sum.skipped++;
      finished++;
      sum.bytes += state.files[e.path]!.size;
      if (lines) process.stderr.write(`damselfly get: [${finished}/${entries.length}] ${e.path}: already complete (verified)\n`);
      return;
    }
    current.set(e.path, { done: 0, size: e.size });
    try {
      await fs.mkdir(dir, { recursive: true });
      const fileArgs: GetArgs = { ...args, url: e.url, output: file, recursive: false, progress: false, digest: undefined };
      // With tracing on, each file is a span of the run's trace, its agent download below it.
      const r = await inSpan('cli.get.file', { 'url.full': e.url, 'damselfly.path': e.path }, () =>
        fetchToFile(fileArgs, file, socket, signal, {
          onBytes: (n) => {
            const c = current.get(e.path);
            if (c) c.done = n;
          },
          warn: (l) => process.stderr.write((tty ? '\r\x1b[2K' : '') + `${l.replace(/^damselfly get: /, `damselfly get: ${e.path}: `)}\n`),
        }),
      );
      const sha256 = await fileSha256(file);
      state.files[e.path] = { url: e.url, size: r.bytes, sha256 };
      await save();
      let peer = 0;
      let source = 0;
      if (r.via === 'origin') source = r.bytes;
      else if (r.taskId) {
        const t = await taskTraffic(socket, r.taskId);
        peer = Math.min(r.bytes, t?.peer ?? 0);
        source = Math.min(r.bytes - peer, t?.source ?? 0);
      }
      sum.fromPeers += peer;
      sum.fromOrigin += source;
      sum.fromAgentCache += r.bytes - peer - source;
      sum.bytes += r.bytes;
      sum.downloaded++;
      finished++;
      if (lines) process.stderr.write(`damselfly get: [${finished}/${entries.length}] ${e.path}: ${fmt(r.bytes)} (peers ${fmt(peer)}, origin ${fmt(source)})\n`);
    } catch (err) {
      sum.failed++;
      finished++;
      const why = signal.aborted ? `timed out after ${args.timeoutMs} ms` : errorMessage(err);
      failures.push(`${e.path}: failed: ${why}`);
      if (lines) process.stderr.write(`damselfly get: [${finished}/${entries.length}] ${e.path}: failed: ${why}\n`);
    } finally {
      current.delete(e.path);
    }
  };
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.max(1, Math.min(args.concurrency, entries.length)) }, async () => {
      while (next < entries.length) await one(entries[next++]!);
    }),
  );
  if (timer) clearInterval(timer);
  draw(true);
  await saving.catch((err: unknown) => failures.push(`${STATE_FILE}: cannot be written: ${errorMessage(err)}`));
  sum.seconds = (performance.now() - t0) / 1000;
  if (!lines) for (const f of failures) process.stderr.write(`damselfly get: ${f}\n`);
  process.stderr.write(
    `damselfly get: ${sum.files} files (${sum.downloaded} downloaded, ${sum.skipped} already complete, ${sum.failed} failed), ${fmt(sum.bytes)} in ${sum.seconds.toFixed(1)}s: ${fmt(sum.fromPeers)} from peers, ${fmt(sum.fromOrigin)} from the origin, ${fmt(sum.fromAgentCache)} already on the agent\n`,
  );
  if (args.json || process.env.DAMSELFLY_GET_SUMMARY_JSON === '1') process.stdout.write(JSON.stringify(traceId ? { ...sum, trace_id: traceId } : sum) + '\n');
  return sum.failed > 0 ? 1 : 0;
}
