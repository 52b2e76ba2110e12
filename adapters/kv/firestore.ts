/**
 * Firestore KV store (@google-cloud/firestore 8). Records are documents in `<collectionPrefix>kv`
 * with fields k (the key), v (JSON text), ver, expMs and expireAt (a Timestamp, so a production
 * database can add a native TTL policy on it). Document ids are the key with `%` and `/` escaped.
 *
 * Single-key conditional writes read the document, check its version, then write with a
 * `lastUpdateTime` precondition (an optimistic compare-and-set: a concurrent write makes it fail →
 * ConflictError). transact: atomic (runTransaction: reads every key, checks, writes; limit 500 ops).
 * TTL: filtered on every read with the client clock (native TTL deletion is lazy, up to a day).
 * list() needs only the single-field index on `k` that Firestore creates automatically.
 */
import { Firestore, Timestamp, type CollectionReference, type DocumentReference, type DocumentSnapshot } from '@google-cloud/firestore';
import { ConflictError, InvalidError, NotFoundError, UnavailableError, isDamselflyError } from '../errors.js';
import type { FirestoreKvConfig } from '../store-config.js';
import { checkKey, checkOps, checkTtl, decodeCursor, encodeCursor, pageSize, prefixEnd, toJson } from './common.js';
import { withTimeout } from '../clock.js';
import type { KvOp, KvRecord, KvStore, ListOptions, ListPage, WriteOptions } from './port.js';

/** gRPC status codes the client reports in `err.code`. */
const GRPC = { INVALID_ARGUMENT: 3, DEADLINE_EXCEEDED: 4, NOT_FOUND: 5, ALREADY_EXISTS: 6, RESOURCE_EXHAUSTED: 8, FAILED_PRECONDITION: 9, ABORTED: 10, UNAVAILABLE: 14 } as const;

/** Translates a Firestore (gRPC) error; driver errors never leave the adapter. */
export function firestoreError(err: unknown, what: string): Error {
  if (isDamselflyError(err)) return err;
  const code = (err as { code?: unknown }).code;
  const message = `${what}: ${(err as Error)?.message ?? String(err)}`;
  const details = { driverCode: typeof code === 'number' || typeof code === 'string' ? code : undefined };
  if (code === GRPC.ALREADY_EXISTS || code === GRPC.FAILED_PRECONDITION || code === GRPC.ABORTED) return new ConflictError(message, { details });
  if (code === GRPC.NOT_FOUND) return new NotFoundError(message, { details });
  if (code === GRPC.INVALID_ARGUMENT) return new InvalidError(message, { details });
  return new UnavailableError(message, { details });
}

/** Runs one driver call within `ms`; any failure leaves as our typed error, named `what`. */
export async function firestoreCall<T>(what: string, fn: () => Promise<T>, ms: number): Promise<T> {
  try {
    return await withTimeout(fn(), ms, what, 'UNAVAILABLE');
  } catch (err) {
    throw firestoreError(err, what);
  }
}

/**
 * Checks that a new client's server answers (`probe`); closes the client and rethrows when it does
 * not. The first call loads the gRPC stack and opens the channel (seconds on a small machine), so
 * callers give it at least FIRST_CALL_MS.
 */
export async function probeFirestore(db: Firestore, probe: () => Promise<unknown>): Promise<void> {
  try {
    await probe();
  } catch (err) {
    await db.terminate().catch(() => {});
    throw err;
  }
}
export const FIRST_CALL_MS = 20_000;

export function grpcCode(err: unknown): unknown {
  return (err as { code?: unknown })?.code;
}

/** A Firestore client for `projectId`; with `emulatorHost` (or FIRESTORE_EMULATOR_HOST) it talks plain text to the emulator. */
export function openFirestore(projectId: string, emulatorHost: string | undefined): Firestore {
  const host = emulatorHost ?? process.env.FIRESTORE_EMULATOR_HOST;
  return new Firestore({
    projectId,
    ignoreUndefinedProperties: true,
    // Against the emulator, a fixed universe domain keeps google-auth-library from probing the
    // GCE metadata server (169.254.169.254) to find one: only the emulator's address is contacted.
    ...(host ? { host, ssl: false, universeDomain: 'googleapis.com' } : {}),
  });
}

/** Document id for a key: `/` may not appear in ids, and a leading letter avoids the reserved `.`, `..` and `__x__`. */
export function docId(key: string): string {
  return `k${key.replace(/%/g, '%25').replace(/\//g, '%2F')}`;
}

interface Doc {
  k: string;
  v: string;
  ver: number;
  expMs: number | null;
  expireAt: Timestamp | null;
}

function live(snap: DocumentSnapshot, now: number): Doc | undefined {
  if (!snap.exists) return undefined;
  const d = snap.data() as Doc;
  return d.expMs === null || d.expMs === undefined || d.expMs > now ? d : undefined;
}

function toRecord<T>(d: Doc): KvRecord<T> {
  return { key: d.k, value: JSON.parse(d.v) as T, version: d.ver, ...(d.expMs ? { expiresAt: d.expMs } : {}) };
}

export class FirestoreKvStore implements KvStore {
  readonly kind = 'firestore';
  readonly maxTransactionOps = 500;
  private closed = false;
  private readonly col: CollectionReference;

  private constructor(private readonly db: Firestore, prefix: string, private readonly timeoutMs: number) {
    this.col = db.collection(`${prefix}kv`);
  }

  /** Builds the client and checks the server answers; UnavailableError when it does not in time. */
  static async open(config: Pick<FirestoreKvConfig, 'projectId' | 'collectionPrefix' | 'emulatorHost' | 'timeoutMs'>): Promise<FirestoreKvStore> {
    const db = openFirestore(config.projectId, config.emulatorHost);
    const store = new FirestoreKvStore(db, config.collectionPrefix, config.timeoutMs);
    await probeFirestore(db, () => store.call('connect', () => store.col.doc('k_probe').get(), Math.max(config.timeoutMs, FIRST_CALL_MS)));
    return store;
  }

  private async call<T>(what: string, fn: () => Promise<T>, ms = this.timeoutMs): Promise<T> {
    if (this.closed) throw new InvalidError('firestore KV store is closed');
    return firestoreCall(`firestore kv ${what}`, fn, ms);
  }

  private ref(key: string): DocumentReference {
    return this.col.doc(docId(key));
  }

  private doc(key: string, json: string, ver: number, ttlMs: number | undefined, now: number): Doc {
    const expMs = ttlMs !== undefined ? now + Math.ceil(ttlMs) : null;
    return { k: key, v: json, ver, expMs, expireAt: expMs !== null ? Timestamp.fromMillis(expMs) : null };
  }

  async get<T = unknown>(key: string): Promise<KvRecord<T> | undefined> {
    checkKey(key);
    const snap = await this.call('get', () => this.ref(key).get());
    const d = live(snap, Date.now());
    return d ? toRecord<T>(d) : undefined;
  }

  /**
   * One optimistic write: `decide` sees the live document (or undefined) and returns the version to
   * write, or throws. The write is conditional on the document not having changed since the read.
   */
  private async cas(what: string, key: string, json: string, ttlMs: number | undefined, decide: (cur: Doc | undefined) => number): Promise<number> {
    const ref = this.ref(key);
    const snap = await this.call(what, () => ref.get());
    const now = Date.now();
    const ver = decide(live(snap, now));
    const data = this.doc(key, json, ver, ttlMs, now);
    await this.call(what, () => (snap.exists ? ref.update({ ...data }, { lastUpdateTime: snap.updateTime! }) : ref.create(data)));
    return ver;
  }

  async put<T = unknown>(key: string, value: T, options?: WriteOptions): Promise<number> {
    checkKey(key);
    checkTtl(options?.ttlMs);
    const json = toJson(value);
    for (let attempt = 0; attempt < 50; attempt++) {
      try {
        return await this.cas('put', key, json, options?.ttlMs, (cur) => (cur?.ver ?? 0) + 1);
      } catch (err) {
        if (!(err instanceof ConflictError)) throw err;
      }
    }
    throw new UnavailableError(`firestore kv put ${key}: too much contention`);
  }

  async create<T = unknown>(key: string, value: T, options?: WriteOptions): Promise<number> {
    checkKey(key);
    checkTtl(options?.ttlMs);
    return this.cas('create', key, toJson(value), options?.ttlMs, (cur) => {
      if (cur) throw new ConflictError(`key ${key} already exists`);
      return 1;
    });
  }

  async update<T = unknown>(key: string, value: T, expectedVersion: number, options?: WriteOptions): Promise<number> {
    checkKey(key);
    checkTtl(options?.ttlMs);
    try {
      return await this.cas('update', key, toJson(value), options?.ttlMs, (cur) => {
        if (!cur) throw new NotFoundError(`key ${key} not found`);
        if (cur.ver !== expectedVersion) throw new ConflictError(`key ${key} is at version ${cur.ver}, not ${expectedVersion}`);
        return cur.ver + 1;
      });
    } catch (err) {
      if (err instanceof ConflictError && /ALREADY_EXISTS/.test(err.message)) throw new NotFoundError(`key ${key} not found`);
      throw err;
    }
  }

  async delete(key: string, options?: { expectedVersion?: number }): Promise<boolean> {
    checkKey(key);
    const expected = options?.expectedVersion;
    for (let attempt = 0; attempt < 50; attempt++) {
      const ref = this.ref(key);
      const snap = await this.call('delete', () => ref.get());
      const cur = live(snap, Date.now());
      if (!cur || (expected !== undefined && cur.ver !== expected)) {
        if (expected !== undefined) throw new ConflictError(`key ${key} is not at version ${expected}`);
        if (snap.exists) await this.call('delete', () => ref.delete({ lastUpdateTime: snap.updateTime! })).catch(() => {});
        return false;
      }
      try {
        await this.call('delete', () => ref.delete({ lastUpdateTime: snap.updateTime! }));
        return true;
      } catch (err) {
        if (!(err instanceof ConflictError)) throw err;
      }
    }
    throw new UnavailableError(`firestore kv delete ${key}: too much contention`);
  }

  async list<T = unknown>(prefix: string, options?: ListOptions): Promise<ListPage<T>> {
    const limit = pageSize(options?.limit);
    let after = decodeCursor(options?.cursor, prefix);
    const end = prefixEnd(prefix);
    const now = Date.now();
    const items: KvRecord<T>[] = [];
    for (;;) {
      let q = this.col.where('k', '>=', prefix);
      if (end !== undefined) q = q.where('k', '<', end);
      let ordered = q.orderBy('k');
      if (after !== undefined) ordered = ordered.startAfter(after);
      const want = limit + 1 - items.length;
      const snap = await this.call('list', () => ordered.limit(want).get());
      for (const d of snap.docs) {
        const doc = live(d, now);
        if (doc) items.push(toRecord<T>(doc));
      }
      if (snap.docs.length < want || items.length > limit) break;
      after = (snap.docs[snap.docs.length - 1].data() as Doc).k;
    }
    const page = items.slice(0, limit);
    return items.length > limit ? { items: page, cursor: encodeCursor(page[page.length - 1].key) } : { items: page };
  }

  async transact(ops: KvOp[]): Promise<void> {
    checkOps(ops, this.maxTransactionOps);
    if (ops.length === 0) return;
    const refs = ops.map((op) => this.ref(op.key));
    await this.call('transact', () =>
      this.db.runTransaction(
        async (tx) => {
          const snaps = await tx.getAll(...refs);
          const now = Date.now();
          ops.forEach((op, i) => {
            const cur = live(snaps[i], now);
            if (op.type === 'create' && cur) throw new ConflictError(`transaction: key ${op.key} already exists`);
            if ((op.type === 'update' || (op.type === 'delete' && op.expectedVersion !== undefined)) && (!cur || cur.ver !== op.expectedVersion)) {
              throw new ConflictError(`transaction: key ${op.key} is not at version ${op.expectedVersion}`);
            }
          });
          ops.forEach((op, i) => {
            if (op.type === 'delete') tx.delete(refs[i]);
            else tx.set(refs[i], this.doc(op.key, toJson(op.value), (live(snaps[i], now)?.ver ?? 0) + 1, op.ttlMs, now));
          });
        },
        { maxAttempts: 5 },
      ),
    );
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.db.terminate().catch(() => {});
  }
}

export { GRPC };
