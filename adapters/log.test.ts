import { describe, expect, it } from 'vitest';
import { createLogger, silentLogger } from './log.js';

describe('Logger.debugEnabled', () => {
  it('says whether debug lines are written, for the logger and its children', () => {
    const lines: string[] = [];
    const info = createLogger({}, { level: 'info', write: (l) => lines.push(l) });
    const debug = createLogger({}, { level: 'debug', write: (l) => lines.push(l) });
    expect(info.debugEnabled).toBe(false);
    expect(info.child({ role: 'x' }).debugEnabled).toBe(false);
    expect(debug.debugEnabled).toBe(true);
    expect(debug.child({ role: 'x' }).debugEnabled).toBe(true);
    expect(silentLogger.debugEnabled).toBe(false);
    info.debug('dropped');
    debug.child({ role: 'x' }).debug('kept');
    expect(lines.map((l) => JSON.parse(l).msg)).toEqual(['kept']);
  });
});
