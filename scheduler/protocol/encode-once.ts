/**
 * Encode once, write to many streams. A message the service sends unchanged down many AnnouncePeer
 * streams (a digest push goes to every running peer of a task) is marked `shared`; the server's
 * response serializer then encodes it on its first write and hands the same bytes to every later
 * write. grpc-js copies the serializer's bytes into each stream's frame (server-interceptors
 * serializeMessage), so sharing them is safe. Unmarked messages are encoded as before.
 */

const SHARED = Symbol('damselfly.sharedEncoding');

type Marked = { [SHARED]?: Buffer | true };

/** Marks `message` as sent unchanged to several streams (it must not be mutated afterwards). */
export function shared<T extends object>(message: T): T {
  (message as Marked)[SHARED] = true;
  return message;
}

/** Wraps a grpc-js serializer: a `shared` message is encoded at most once. */
export function encodeOnce<T>(serialize: (value: T) => Buffer): (value: T) => Buffer {
  return (value: T): Buffer => {
    const m = value as Marked;
    const cached = m[SHARED];
    if (cached === undefined) return serialize(value);
    if (cached !== true) return cached;
    const bytes = serialize(value);
    m[SHARED] = bytes;
    return bytes;
  };
}
