import { describe, expect, it } from 'vitest';
import { decodeDownload, encodeDownload, priorityLevel, priorityName, type DownloadRequest } from './download.js';
import { loadProto } from './loader.js';

const full: DownloadRequest = {
  url: 'https://origin.example/blob?X-Amz-Signature=s',
  requestHeaders: { authorization: 'Bearer t' },
  tag: 't',
  application: 'a',
  priority: 3,
  filteredQueryParams: ['X-Amz-Signature'],
  pieceLength: 4 << 20,
  digest: 'sha256:' + 'ab'.repeat(32),
  range: { start: 10, end: 19 },
  disableBackToSource: true,
  needBackToSource: true,
  isPreheat: true,
  contentForCalculatingTaskId: 'c',
  enableTaskIdBasedBlobDigest: true,
  timeoutMs: 5000,
};

describe('download codec', () => {
  it('sets every field of the proto Download message and survives the wire both ways', () => {
    const { Dfdaemon } = loadProto();
    const m = Dfdaemon.service.DownloadTask!;
    const wire = encodeDownload(full);
    const back = (m.requestDeserialize(m.requestSerialize({ download: wire })) as { download: Record<string, unknown> }).download;
    // A field added to the proto but not to the codec shows up here.
    expect(Object.keys(wire).sort()).toEqual(Object.keys(back).sort());
    expect(decodeDownload(back)).toEqual(full);
  });

  it('leaves absent what the sender left empty, and keeps an open-ended range open', () => {
    const d = decodeDownload(encodeDownload({ url: 'https://o/x', range: { start: 5 } }));
    expect(d).toMatchObject({ url: 'https://o/x', priority: 6, range: { start: 5, end: undefined } });
    expect(d.tag).toBeUndefined();
    expect(d.filteredQueryParams).toBeUndefined();
    expect(d.pieceLength).toBeUndefined();
  });

  it('maps priority levels both ways and falls back to LEVEL6 on nonsense', () => {
    expect(priorityName(0)).toBe('LEVEL0');
    expect(priorityName(undefined)).toBe('LEVEL6');
    expect(priorityName(9)).toBe('LEVEL6');
    expect(priorityName(2.5)).toBe('LEVEL6');
    expect(priorityLevel('LEVEL2')).toBe(2);
    expect(priorityLevel(4)).toBe(4);
    expect(priorityLevel('LEVEL7')).toBe(6);
    expect(priorityLevel('level1')).toBe(6);
    expect(priorityLevel(undefined)).toBe(6);
  });
});
