import { describe, expect, it } from 'vitest';
import { manifestUrlOf } from '../../control/preheat-cli.js';

describe('damselfly preheat: image references', () => {
  it('turns references into manifest URLs (http for loopback or --insecure)', () => {
    expect(manifestUrlOf('127.0.0.1:5000/team/app:1.0')).toBe('http://127.0.0.1:5000/v2/team/app/manifests/1.0');
    expect(manifestUrlOf('localhost:5000/app')).toBe('http://localhost:5000/v2/app/manifests/latest');
    expect(manifestUrlOf('registry.example.com/a/b@sha256:abcd')).toBe('https://registry.example.com/v2/a/b/manifests/sha256:abcd');
    expect(manifestUrlOf('registry.example.com/a:1', true)).toBe('http://registry.example.com/v2/a/manifests/1');
    expect(manifestUrlOf('alpine:3.19')).toBe('https://registry-1.docker.io/v2/library/alpine/manifests/3.19');
    expect(manifestUrlOf('docker.io/bitnami/redis')).toBe('https://registry-1.docker.io/v2/bitnami/redis/manifests/latest');
    expect(() => manifestUrlOf('127.0.0.1:5000/Bad_Name')).toThrow(/invalid image reference/);
  });
});
