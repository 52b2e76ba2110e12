/**
 * The per-request source credentials (S3 keys, the Hugging Face token) travel as request headers,
 * agent → scheduler → seed peer like a registry's Authorization does; the structured log must never
 * print them, whatever object they are nested in.
 */
import { describe, expect, it } from 'vitest';
import { redact } from '../../adapters/log.js';
import { HF_HEADERS } from '../../adapters/source/hf.js';
import { S3_HEADERS } from '../../adapters/source/s3.js';

describe('source credentials in logs', () => {
  it('redacts the secret S3 and Hugging Face headers wherever they are nested', () => {
    const headers = { [S3_HEADERS.secretAccessKey]: 'S3-SECRET', [S3_HEADERS.sessionToken]: 'S3-SESSION', [HF_HEADERS.token]: 'HF-TOKEN', [S3_HEADERS.endpoint]: 'http://127.0.0.1:9000' };
    const text = JSON.stringify(redact({ download: { request_header: headers }, list: [headers] }));
    for (const secret of ['S3-SECRET', 'S3-SESSION', 'HF-TOKEN']) expect(text).not.toContain(secret);
    expect(text).toContain('http://127.0.0.1:9000');
  });
});
