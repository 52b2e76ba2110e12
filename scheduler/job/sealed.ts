/**
 * Credentials inside queued job messages (a preheat's password and headers) are sealed with
 * AES-256-GCM under a key derived from the scheduler secret, which both the manager and the
 * schedulers hold; the queue's store (queue.db and its WAL, Redis, SQS...) sees only ciphertext,
 * and the message itself is deleted when the job ends.
 */
import { createCipheriv, createDecipheriv, hkdfSync, randomBytes } from 'node:crypto';
import { InvalidError } from '../../adapters/errors.js';

const VERSION = 'v1';

function keyOf(secret: string): Buffer {
  return Buffer.from(hkdfSync('sha256', Buffer.from(secret, 'utf8'), Buffer.from('damselfly'), Buffer.from('job-credentials-v1'), 32));
}

/** `v1.<iv>.<ciphertext>.<tag>` (base64url) of `value` as JSON. */
export function seal(secret: string, value: unknown): string {
  const iv = randomBytes(12);
  const cipher = createCipheriv('aes-256-gcm', keyOf(secret), iv);
  const ct = Buffer.concat([cipher.update(JSON.stringify(value), 'utf8'), cipher.final()]);
  return [VERSION, iv.toString('base64url'), ct.toString('base64url'), cipher.getAuthTag().toString('base64url')].join('.');
}

/** The value sealed by `seal`. Throws InvalidError when the secret differs or the text was altered. */
export function unseal<T = unknown>(secret: string, sealed: string): T {
  const [version, iv, ct, tag] = sealed.split('.');
  if (version !== VERSION || !iv || !ct || !tag) throw new InvalidError('sealed credentials: unknown format');
  try {
    const decipher = createDecipheriv('aes-256-gcm', keyOf(secret), Buffer.from(iv, 'base64url'));
    decipher.setAuthTag(Buffer.from(tag, 'base64url'));
    return JSON.parse(Buffer.concat([decipher.update(Buffer.from(ct, 'base64url')), decipher.final()]).toString('utf8')) as T;
  } catch (err) {
    throw new InvalidError('sealed credentials cannot be opened: the scheduler secret differs from the manager\'s, or the message was altered', { cause: err });
  }
}
