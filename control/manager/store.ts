/**
 * Small helpers over the KV port shared by the manager's routes: id counters, compare-and-set
 * loops and full listings. All conditional: two manager instances (Lambda) may race on any key.
 */
import { ConflictError, NotFoundError, UnavailableError } from '../../adapters/errors.js';
import type { KvRecord, KvStore } from '../../adapters/kv/port.js';
import { managerKeys } from '../../adapters/keys.js';

const CAS_ATTEMPTS = 20;

/** Allocates the next integer id for `name` (1, 2, ...). Throws UnavailableError under endless contention. */
export async function nextId(kv: KvStore, name: string): Promise<number> {
  const key = managerKeys.counter(name);
  for (let i = 0; i < CAS_ATTEMPTS; i++) {
    const rec = await kv.get<{ n: number }>(key);
    try {
      if (!rec) {
        await kv.create(key, { n: 1 });
        return 1;
      }
      const n = rec.value.n + 1;
      await kv.update(key, { n }, rec.version);
      return n;
    } catch (err) {
      if (!(err instanceof ConflictError) && !(err instanceof NotFoundError)) throw err;
    }
  }
  throw new UnavailableError(`id counter ${name} is too contended`);
}

/**
 * Read-modify-write with retries on version conflicts. `fn` returns the new value, or undefined to
 * leave the record as it is. Throws NotFoundError when the key is absent.
 */
export async function casUpdate<T>(kv: KvStore, key: string, fn: (current: T) => T | undefined): Promise<KvRecord<T>> {
  for (let i = 0; i < CAS_ATTEMPTS; i++) {
    const rec = await kv.get<T>(key);
    if (!rec) throw new NotFoundError(`${key} not found`);
    const next = fn(rec.value);
    if (next === undefined) return rec;
    try {
      const version = await kv.update(key, next, rec.version);
      return { key, value: next, version };
    } catch (err) {
      if (!(err instanceof ConflictError)) throw err;
    }
  }
  throw new UnavailableError(`${key} is too contended`);
}

/** Every record under `prefix`, in key order. */
export async function listAll<T>(kv: KvStore, prefix: string): Promise<KvRecord<T>[]> {
  const out: KvRecord<T>[] = [];
  let cursor: string | undefined;
  do {
    const page = await kv.list<T>(prefix, { limit: 1000, cursor });
    out.push(...page.items);
    cursor = page.cursor;
  } while (cursor);
  return out;
}
