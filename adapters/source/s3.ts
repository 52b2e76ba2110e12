/**
 * The s3:// backend of the source port (`s3://BUCKET/KEY`), on @aws-sdk/client-s3: ranged GetObject
 * for pieces, HeadObject for stat, ListObjectsV2 for prefixes. Works with any S3-compatible store
 * through an endpoint.
 *
 * Settings, per request first (headers, as `damselfly get --storage-*` or `-H` send them; never
 * forwarded anywhere, never logged), then the process environment:
 *   x-damselfly-s3-endpoint          AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL   (unset = AWS itself)
 *   x-damselfly-s3-region            AWS_REGION, AWS_DEFAULT_REGION          (default us-east-1)
 *   x-damselfly-s3-force-path-style  true when an endpoint is set
 *   x-damselfly-s3-access-key-id, x-damselfly-s3-secret-access-key, x-damselfly-s3-session-token
 *                                    else the SDK's default chain (env, ~/.aws, SSO, IMDS…)
 * SDK errors become SourceError (the store answered: its HTTP status) or UnavailableError (it could
 * not be reached); the SDK's own retries are off because the task manager retries reads itself.
 */
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { GetObjectCommand, HeadObjectCommand, ListObjectsV2Command, S3Client, type S3ClientConfig } from '@aws-sdk/client-s3';
import { InvalidError, SourceError, UnavailableError } from '../errors.js';
import { safeRelativePath, type ByteRange, type SourceBackend, type SourceEntry, type SourceResponse, type SourceStat } from './port.js';

export const S3_HEADERS = {
  endpoint: 'x-damselfly-s3-endpoint',
  region: 'x-damselfly-s3-region',
  forcePathStyle: 'x-damselfly-s3-force-path-style',
  accessKeyId: 'x-damselfly-s3-access-key-id',
  secretAccessKey: 'x-damselfly-s3-secret-access-key',
  sessionToken: 'x-damselfly-s3-session-token',
} as const;

/** Bucket and key of an s3:// URL (the key percent-decoded). Throws InvalidError naming the URL. */
export function parseS3Url(url: string): { bucket: string; key: string } {
  const m = /^s3:\/\/([^/?#]+)\/?([^?#]*)$/i.exec(url);
  if (!m) throw new InvalidError(`url ${url} is not valid: expected s3://BUCKET/KEY`);
  let key: string;
  try {
    key = decodeURIComponent(m[2]!);
  } catch {
    throw new InvalidError(`url ${url} has a malformed percent-escape in its key`);
  }
  return { bucket: m[1]!, key };
}

/** The s3:// URL of a bucket and key (each key segment percent-encoded, so parseS3Url returns it). */
export function s3Url(bucket: string, key: string): string {
  return `s3://${bucket}/${key.split('/').map(encodeURIComponent).join('/')}`;
}

function header(h: Record<string, string>, name: string): string | undefined {
  for (const [k, v] of Object.entries(h)) if (k.toLowerCase() === name && v) return v;
  return undefined;
}

const clients = new Map<string, S3Client>();
const MAX_CLIENTS = 32;

function clientFor(h: Record<string, string>): S3Client {
  const endpoint = header(h, S3_HEADERS.endpoint) ?? process.env.AWS_ENDPOINT_URL_S3 ?? process.env.AWS_ENDPOINT_URL;
  const region = header(h, S3_HEADERS.region) ?? process.env.AWS_REGION ?? process.env.AWS_DEFAULT_REGION ?? 'us-east-1';
  const ps = header(h, S3_HEADERS.forcePathStyle);
  const forcePathStyle = ps !== undefined ? ps === 'true' || ps === '1' : endpoint !== undefined;
  const accessKeyId = header(h, S3_HEADERS.accessKeyId);
  const secretAccessKey = header(h, S3_HEADERS.secretAccessKey);
  const sessionToken = header(h, S3_HEADERS.sessionToken);
  if ((accessKeyId === undefined) !== (secretAccessKey === undefined)) throw new InvalidError(`${S3_HEADERS.accessKeyId} and ${S3_HEADERS.secretAccessKey} must be given together`);
  if (endpoint !== undefined && !/^https?:\/\/[^/]+/i.test(endpoint)) throw new InvalidError(`S3 endpoint ${endpoint} is not valid: expected http(s)://HOST[:PORT]`);
  // The cache key holds a digest of the secret, never the secret itself.
  const secretId = secretAccessKey ? createHash('sha256').update(`${secretAccessKey}\0${sessionToken ?? ''}`).digest('hex') : '';
  const key = JSON.stringify([endpoint, region, forcePathStyle, accessKeyId, secretId]);
  let c = clients.get(key);
  if (!c) {
    const cfg: S3ClientConfig = { region, forcePathStyle, maxAttempts: 1, ...(endpoint ? { endpoint } : {}) };
    if (accessKeyId && secretAccessKey) cfg.credentials = { accessKeyId, secretAccessKey, ...(sessionToken ? { sessionToken } : {}) };
    c = new S3Client(cfg);
    if (clients.size >= MAX_CLIENTS) {
      const [oldKey, old] = clients.entries().next().value as [string, S3Client];
      clients.delete(oldKey);
      old.destroy();
    }
    clients.set(key, c);
  }
  return c;
}

/** Translates an SDK failure into SourceError (the store answered) or UnavailableError. */
function translate(err: unknown, what: string, signal?: AbortSignal): Error {
  if (signal?.aborted) return err as Error;
  if (err instanceof InvalidError) return err;
  const e = err as { name?: string; message?: string; $metadata?: { httpStatusCode?: number }; $response?: { statusCode?: number } };
  const status = e.$metadata?.httpStatusCode ?? e.$response?.statusCode;
  if (status && status >= 300) return new SourceError(`object store answered ${status} (${e.name ?? 'error'}) for ${what}`, status, {}, Buffer.alloc(0), { cause: err });
  if (e.name === 'CredentialsProviderError') return new SourceError(`no S3 credentials for ${what}: ${e.message}`, 401, {}, Buffer.alloc(0), { cause: err });
  return new UnavailableError(`object store for ${what} unreachable: ${e.message ?? String(err)}`, { cause: err });
}

function headersOf(r: { ETag?: string; LastModified?: Date; ContentType?: string; CacheControl?: string; ContentEncoding?: string }): Record<string, string> {
  const h: Record<string, string> = {};
  if (r.ContentType) h['content-type'] = r.ContentType;
  if (r.ETag) h.etag = r.ETag;
  if (r.LastModified) h['last-modified'] = r.LastModified.toUTCString();
  if (r.CacheControl) h['cache-control'] = r.CacheControl;
  if (r.ContentEncoding) h['content-encoding'] = r.ContentEncoding;
  return h;
}

export const s3Source: SourceBackend = {
  schemes: ['s3'],

  async stat(url: string, headers: Record<string, string>, signal?: AbortSignal): Promise<SourceStat> {
    const { bucket, key } = parseS3Url(url);
    if (!key) throw new InvalidError(`url ${url} names a bucket, not an object: expected s3://BUCKET/KEY`);
    try {
      const r = await clientFor(headers).send(new HeadObjectCommand({ Bucket: bucket, Key: key }), { abortSignal: signal });
      return { size: r.ContentLength ?? -1, headers: headersOf(r) };
    } catch (err) {
      throw translate(err, url, signal);
    }
  },

  async read(url: string, headers: Record<string, string>, range?: ByteRange, signal?: AbortSignal): Promise<SourceResponse> {
    const { bucket, key } = parseS3Url(url);
    if (!key) throw new InvalidError(`url ${url} names a bucket, not an object: expected s3://BUCKET/KEY`);
    let r;
    try {
      r = await clientFor(headers).send(new GetObjectCommand({ Bucket: bucket, Key: key, ...(range ? { Range: `bytes=${range.start}-${range.end ?? ''}` } : {}) }), { abortSignal: signal });
    } catch (err) {
      throw translate(err, url, signal);
    }
    const body = r.Body as Readable | undefined;
    if (!body || typeof (body as Readable).pipe !== 'function') throw new UnavailableError(`object store sent no body for ${url}`);
    const cr = /bytes (\d+)-(\d+)\/(\d+|\*)/.exec(r.ContentRange ?? '');
    const status = r.$metadata.httpStatusCode ?? (cr ? 206 : 200);
    let totalLength = -1;
    let offset = 0;
    if (cr) {
      offset = Number(cr[1]);
      totalLength = cr[3] === '*' ? -1 : Number(cr[3]);
    } else if (r.ContentLength !== undefined) {
      totalLength = r.ContentLength;
    }
    return { status, headers: headersOf(r), totalLength, offset, body: body instanceof Readable ? body : Readable.from(body) };
  },

  async list(url: string, headers: Record<string, string>, signal?: AbortSignal): Promise<SourceEntry[]> {
    const { bucket, key } = parseS3Url(url);
    const prefix = key === '' || key.endsWith('/') ? key : key + '/';
    const client = clientFor(headers);
    const out: SourceEntry[] = [];
    let token: string | undefined;
    try {
      do {
        const r = await client.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix, ContinuationToken: token }), { abortSignal: signal });
        for (const o of r.Contents ?? []) {
          if (!o.Key || o.Key.endsWith('/')) continue; // "folder" marker objects
          const rel = o.Key.slice(prefix.length);
          if (!safeRelativePath(rel)) continue;
          out.push({ url: s3Url(bucket, o.Key), path: rel, size: o.Size ?? -1 });
        }
        token = r.IsTruncated ? r.NextContinuationToken : undefined;
      } while (token);
    } catch (err) {
      throw translate(err, url, signal);
    }
    if (out.length === 0) throw new SourceError(`nothing below ${url} (no object has the prefix ${prefix || '(bucket root)'})`, 404);
    return out.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  },
};
