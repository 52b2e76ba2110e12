import { describe, expect, it } from 'vitest';
import { taskSizeLevel } from './metrics.js';

describe('taskSizeLevel', () => {
  it('buckets by powers of two MiB', () => {
    const MiB = 1024 * 1024;
    expect(taskSizeLevel(-1)).toBe('0');
    expect(taskSizeLevel(0)).toBe('1');
    expect(taskSizeLevel(MiB)).toBe('1');
    expect(taskSizeLevel(MiB + 1)).toBe('2');
    expect(taskSizeLevel(12 * MiB)).toBe('5');
    expect(taskSizeLevel(16 * MiB)).toBe('5');
    expect(taskSizeLevel(1024 ** 4)).toBe('20');
  });
});
