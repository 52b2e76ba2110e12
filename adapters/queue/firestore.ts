/**
 * Firestore queue: one collection `<collectionPrefix>queue`, a document per message
 * {queue, body (JSON text), sentAt, visibleAt, rc, receipt}. receive() queries due messages
 * (queue ==, visibleAt <=, ordered by visibleAt: production needs the composite index
 * queue ASC, visibleAt ASC) and takes a lease on each candidate with a write conditioned on the
 * document's lastUpdateTime, i.e. a single-document optimistic transaction: of two consumers
 * racing for a message exactly one lease commits, the other skips it. A message due again after
 * `maxReceives` deliveries is moved to the dead-letter queue by the same kind of write.
 * Dedup ids are documents in `<collectionPrefix>queue_dedup` created atomically with the message
 * (a batch). Long polls are woken at once by sends from this process; otherwise they re-query
 * every 150 ms. Time is the client's clock.
 */
import { randomUUID } from 'node:crypto';
import type { CollectionReference, DocumentSnapshot, Firestore } from '@google-cloud/firestore';
import { InvalidError, NotFoundError } from '../errors.js';
import { toJson } from '../kv/common.js';
import { docId, FIRST_CALL_MS, firestoreCall, grpcCode, GRPC, openFirestore, probeFirestore } from '../kv/firestore.js';
import type { FirestoreQueueConfig } from '../store-config.js';
import { DEDUP_WINDOW_MS, Waiters, checkQueueName, checkVisibility, longPoll, resolveReceive, resolveSend, type QueueOptions } from './common.js';
import { deadLetterName, type Queue, type QueueMessage, type ReceiveOptions, type SendOptions } from './port.js';

const POLL_MS = 150;

interface MsgDoc {
  queue: string;
  body: string;
  sentAt: number;
  visibleAt: number;
  rc: number;
  receipt: string | null;
}

export class FirestoreQueue implements Queue {
  readonly kind = 'firestore';
  private readonly waiters = new Waiters();
  private readonly msgs: CollectionReference;
  private readonly dedup: CollectionReference;
  private closed = false;

  private constructor(private readonly db: Firestore, prefix: string, private readonly timeoutMs: number, private readonly options: QueueOptions) {
    this.msgs = db.collection(`${prefix}queue`);
    this.dedup = db.collection(`${prefix}queue_dedup`);
  }

  /** Builds the client and checks the server answers; UnavailableError when it does not in time. */
  static async open(config: Pick<FirestoreQueueConfig, 'projectId' | 'collectionPrefix' | 'emulatorHost' | 'timeoutMs' | 'maxReceives' | 'visibilityMs'>): Promise<FirestoreQueue> {
    const db = openFirestore(config.projectId, config.emulatorHost);
    const q = new FirestoreQueue(db, config.collectionPrefix, config.timeoutMs, { maxReceives: config.maxReceives, visibilityMs: config.visibilityMs });
    await probeFirestore(db, () => q.call('connect', () => q.msgs.doc('probe').get(), Math.max(config.timeoutMs, FIRST_CALL_MS)));
    return q;
  }

  private async call<T>(what: string, fn: () => Promise<T>, ms = this.timeoutMs): Promise<T> {
    if (this.closed) throw new InvalidError('firestore queue is closed');
    return firestoreCall(`firestore queue ${what}`, fn, ms);
  }

  async send<T = unknown>(queue: string, body: T, options?: SendOptions): Promise<string> {
    checkQueueName(queue);
    const { delayMs, dedupId } = resolveSend(options);
    const json = toJson(body);
    const id = randomUUID();
    const now = Date.now();
    const doc: MsgDoc = { queue, body: json, sentAt: now, visibleAt: now + Math.ceil(delayMs), rc: 0, receipt: null };
    if (dedupId === undefined) {
      await this.call('send', () => this.msgs.doc(id).create(doc));
    } else {
      const dref = this.dedup.doc(docId(`${queue}:${dedupId}`));
      for (let attempt = 0; ; attempt++) {
        const prior = await this.call('send', () => dref.get());
        const p = prior.data() as { id: string; until: number } | undefined;
        if (p && p.until > Date.now()) return p.id;
        const batch = this.db.batch();
        if (prior.exists) batch.update(dref, { id, until: now + DEDUP_WINDOW_MS }, { lastUpdateTime: prior.updateTime! });
        else batch.create(dref, { id, until: now + DEDUP_WINDOW_MS });
        batch.create(this.msgs.doc(id), doc);
        try {
          await this.call('send', () => batch.commit());
          break;
        } catch (err) {
          // Another sender claimed the dedup id between our read and write: read it again.
          if ((err as { code?: string }).code !== 'CONFLICT' || attempt >= 5) throw err;
        }
      }
    }
    if (delayMs === 0) this.waiters.notify(queue);
    return id;
  }

  /** Takes a lease on `snap` unless someone else changed it first; returns the message or undefined. */
  private async lease<T>(snap: DocumentSnapshot, queue: string, visibilityMs: number, now: number, isDlq: boolean): Promise<QueueMessage<T> | 'dead' | undefined> {
    const d = snap.data() as MsgDoc;
    try {
      if (!isDlq && d.rc >= this.options.maxReceives) {
        await snap.ref.update({ queue: deadLetterName(queue), rc: 0, visibleAt: now, receipt: null }, { lastUpdateTime: snap.updateTime! });
        return 'dead';
      }
      const receipt = `${snap.id}.${randomUUID()}`;
      await snap.ref.update({ rc: d.rc + 1, visibleAt: now + Math.ceil(visibilityMs), receipt }, { lastUpdateTime: snap.updateTime! });
      return { id: snap.id, body: JSON.parse(d.body) as T, receipt, receiveCount: d.rc + 1, sentAt: d.sentAt };
    } catch (err) {
      const code = grpcCode(err);
      if (code === GRPC.FAILED_PRECONDITION || code === GRPC.NOT_FOUND) return undefined;
      throw err;
    }
  }

  private async take<T>(queue: string, max: number, visibilityMs: number): Promise<QueueMessage<T>[]> {
    const isDlq = queue.endsWith('-dlq');
    const out: QueueMessage<T>[] = [];
    for (let round = 0; round < 5 && out.length < max; round++) {
      const now = Date.now();
      // Fetch a few more than needed: some candidates may be leased by a racing consumer.
      const snap = await this.call('receive', () =>
        this.msgs.where('queue', '==', queue).where('visibleAt', '<=', now).orderBy('visibleAt').limit(2 * (max - out.length)).get(),
      );
      if (snap.empty) break;
      // Lease only as many candidates at a time as are still wanted (an extra lease would count as
      // a delivery and bring the message closer to the dead-letter queue).
      let dead = 0;
      for (let i = 0; i < snap.docs.length && out.length < max; ) {
        const chunk = snap.docs.slice(i, i + (max - out.length));
        i += chunk.length;
        const got = await this.call('receive', () => Promise.all(chunk.map((d) => this.lease<T>(d, queue, visibilityMs, now, isDlq))));
        for (const g of got) {
          if (g === 'dead') dead++;
          else if (g) out.push(g);
        }
      }
      if (dead > 0) this.waiters.notify(deadLetterName(queue));
      if (out.length > 0 && dead === 0) break;
    }
    return out;
  }

  async receive<T = unknown>(queue: string, options?: ReceiveOptions): Promise<QueueMessage<T>[]> {
    checkQueueName(queue);
    const r = resolveReceive(options, this.options.visibilityMs);
    return longPoll(() => this.take<T>(queue, r.max, r.visibilityMs), this.waiters, queue, r, POLL_MS, () => this.closed);
  }

  private async settle(queue: string, receipt: string, apply: (snap: DocumentSnapshot) => Promise<unknown>): Promise<void> {
    checkQueueName(queue);
    const id = receipt.split('.')[0];
    if (!/^[0-9a-f-]{36}$/.test(id)) throw new NotFoundError('not a receipt of this queue');
    const snap = await this.call('settle', () => this.msgs.doc(id).get());
    const d = snap.data() as MsgDoc | undefined;
    if (!d || d.queue !== queue || d.receipt !== receipt) throw new NotFoundError(`no message in ${queue} holds that receipt`);
    try {
      await this.call('settle', () => apply(snap));
    } catch (err) {
      if ((err as { code?: string }).code === 'CONFLICT' || (err as { code?: string }).code === 'NOT_FOUND') {
        throw new NotFoundError(`no message in ${queue} holds that receipt (re-leased meanwhile)`);
      }
      throw err;
    }
  }

  async ack(queue: string, receipt: string): Promise<void> {
    await this.settle(queue, receipt, (snap) => snap.ref.delete({ lastUpdateTime: snap.updateTime! }));
  }

  async extend(queue: string, receipt: string, visibilityMs: number): Promise<void> {
    checkVisibility(visibilityMs);
    await this.settle(queue, receipt, (snap) => snap.ref.update({ visibleAt: Date.now() + Math.ceil(visibilityMs) }, { lastUpdateTime: snap.updateTime! }));
    if (visibilityMs === 0) this.waiters.notify(queue);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.waiters.notifyAll();
    await this.db.terminate().catch(() => {});
  }
}
