import { describe, expect, it } from 'vitest';
import { encodeOnce, shared } from './encode-once.js';
import { loadProto } from './loader.js';

describe('encodeOnce', () => {
  const m = loadProto().Scheduler.service.AnnouncePeer;
  const push = () => ({ task_pieces_response: { task: { id: 't', content_length: 8, piece_length: 4, piece_count: 2, pieces: [{ number: 1, offset: 4, length: 4, digest: 'sha256:ab' }] } } });

  it('encodes a shared message once for every write, with the bytes the proto serializer makes', () => {
    let calls = 0;
    const ser = encodeOnce((v: unknown) => (calls++, m.responseSerialize(v)));
    const msg = shared(push());
    const first = ser(msg);
    for (let i = 0; i < 100; i++) expect(ser(msg)).toBe(first);
    expect(calls).toBe(1);
    expect(first.equals(m.responseSerialize(push()))).toBe(true);
    expect(m.responseDeserialize(first).task_pieces_response.task.pieces[0].digest).toBe('sha256:ab');
    // The mark is invisible to what reads the message's fields.
    expect(Object.keys(msg)).toEqual(['task_pieces_response']);
    expect(JSON.stringify(msg)).toBe(JSON.stringify(push()));
  });

  it('encodes an unmarked message on every write (answers differ per peer)', () => {
    let calls = 0;
    const ser = encodeOnce((v: unknown) => (calls++, m.responseSerialize(v)));
    const msg = push();
    ser(msg);
    ser(msg);
    expect(calls).toBe(2);
  });
});
