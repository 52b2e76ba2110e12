import { describe, expect, it } from 'vitest';
import { taskSizeLevel } from './task-size.js';

describe('taskSizeLevel', () => {
  it("buckets as Dragonfly's TaskSize::calculate_size_level does", () => {
    const MiB = 1024 * 1024;
    const GiB = 1024 * MiB;
    expect(taskSizeLevel(-1)).toBe('0');
    expect(taskSizeLevel(0)).toBe('0');
    expect(taskSizeLevel(Number.NaN)).toBe('0');
    expect(taskSizeLevel(1)).toBe('1');
    expect(taskSizeLevel(MiB - 1)).toBe('1');
    expect(taskSizeLevel(MiB)).toBe('2');
    expect(taskSizeLevel(4 * MiB - 1)).toBe('2');
    expect(taskSizeLevel(4 * MiB)).toBe('3');
    expect(taskSizeLevel(12 * MiB)).toBe('4');
    expect(taskSizeLevel(16 * MiB)).toBe('5');
    expect(taskSizeLevel(64 * MiB)).toBe('7');
    expect(taskSizeLevel(512 * MiB)).toBe('10');
    expect(taskSizeLevel(GiB - 1)).toBe('10');
    expect(taskSizeLevel(GiB)).toBe('11');
    expect(taskSizeLevel(4 * GiB)).toBe('12');
    expect(taskSizeLevel(1024 * GiB - 1)).toBe('19');
    expect(taskSizeLevel(1024 * GiB)).toBe('20');
    expect(taskSizeLevel(Number.MAX_SAFE_INTEGER)).toBe('20');
    expect(taskSizeLevel(Infinity)).toBe('20');
  });
});
