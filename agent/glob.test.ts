import { describe, expect, it } from 'vitest';
import { globToRegExp } from './glob.js';

const m = (g: string, p: string) => globToRegExp(g).test(p);

describe('get --recursive globs', () => {
  it('matches a glob without / against the file name at any depth', () => {
    expect(m('*.safetensors', 'model-00001.safetensors')).toBe(true);
    expect(m('*.safetensors', 'sub/dir/model.safetensors')).toBe(true);
    expect(m('*.json', 'config.json.bak')).toBe(false);
  });
  it('anchors a glob with / to the whole path; * and ? stay within a segment, ** spans them', () => {
    expect(m('tokenizer/*', 'tokenizer/vocab.txt')).toBe(true);
    expect(m('tokenizer/*', 'tokenizer/sub/vocab.txt')).toBe(false);
    expect(m('tokenizer/**', 'tokenizer/sub/vocab.txt')).toBe(true);
    expect(m('**/x.bin', 'x.bin')).toBe(true);
    expect(m('**/x.bin', 'a/b/x.bin')).toBe(true);
    expect(m('a?c/*', 'abc/f')).toBe(true);
    expect(m('a?c/*', 'a/c/f')).toBe(false);
  });
  it('supports classes and negated classes, and takes regex characters literally', () => {
    expect(m('model-0000[12].bin', 'model-00002.bin')).toBe(true);
    expect(m('model-0000[!12].bin', 'model-00002.bin')).toBe(false);
    expect(m('a+b(1).txt', 'a+b(1).txt')).toBe(true);
    expect(m('a.b', 'axb')).toBe(false);
  });
  it('throws for an unterminated class', () => {
    expect(() => globToRegExp('model[12.bin')).toThrow(/'\[' without '\]'/);
  });
});
