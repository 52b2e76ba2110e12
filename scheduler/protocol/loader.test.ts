import { describe, expect, it } from 'vitest';
import { loadProto, warmProto } from './loader.js';

describe('warmProto', () => {
  it('runs every method of both services through its serializers, and messages still round-trip', () => {
    const { Scheduler, Dfdaemon } = loadProto();
    const methods = Object.keys(Scheduler.service).length + Object.keys(Dfdaemon.service).length;
    expect(methods).toBeGreaterThanOrEqual(9);
    expect(warmProto()).toBe(methods); // a sample that did not fit a method would leave it out
    const m = Scheduler.service.AnnouncePeer!;
    const digests = Buffer.alloc(64, 7);
    const back = m.requestDeserialize(
      m.requestSerialize({ host_id: 'h', task_id: 't', peer_id: 'p', download_piece_finished_request: { piece: { number: 3, length: 4096, digest: 'sha256:x', block_digests: digests } } }),
    ) as { request: string; download_piece_finished_request: { piece: { number: number; length: number; block_digests: Buffer } } };
    expect(back.request).toBe('download_piece_finished_request');
    expect(back.download_piece_finished_request.piece).toMatchObject({ number: 3, length: 4096 });
    expect(Buffer.from(back.download_piece_finished_request.piece.block_digests).equals(digests)).toBe(true);
  });
});
