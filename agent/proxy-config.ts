/**
 * The `proxy:` section of the agent configuration (registry mirror and HTTP proxy on port 4001),
 * after Dragonfly's dfdaemon `proxy` block. Imported by `agent/config.ts`.
 */
import { z } from 'zod';
import { durationSchema, sizeSchema } from '../adapters/config.js';

const regexString = z.string().refine((s) => {
  try {
    new RegExp(s);
    return true;
  } catch {
    return false;
  }
}, 'expected a valid regular expression');

export const proxyRuleSchema = z.strictObject({
  /** Requests whose URL (without query) matches go through P2P. */
  regex: regexString,
  /** Force https to the upstream for matching requests. */
  useTLS: z.boolean().default(false),
  /** Replace the upstream authority (host:port) for matching requests. */
  redirect: z.string().optional(),
  /** Query params ignored when computing the task ID; defaults to DEFAULT_FILTERED_QUERY_PARAMS. */
  filteredQueryParams: z.array(z.string()).optional(),
});

export const proxyConfigSchema = z
  .strictObject({
    server: z
      .strictObject({
        ip: z.string().default('0.0.0.0'),
        port: z.number().int().min(0).max(65535).default(4001),
        /** PEM files of the CA used to intercept CONNECT to registry hosts matching a rule. */
        caCert: z.string().optional(),
        caKey: z.string().optional(),
      })
      .prefault({}),
    /**
     * Proxy authentication (dfdaemon's proxy.basicAuth): every request but `/healthy` (mirror,
     * forward-proxy and CONNECT) must carry `Proxy-Authorization: Basic …` with these, else 407.
     */
    basicAuth: z.strictObject({ username: z.string().min(1).refine((u) => !u.includes(':'), 'must not contain ":"'), password: z.string().min(1) }).optional(),
    rules: z.array(proxyRuleSchema).default([{ regex: 'blobs/sha256.*', useTLS: false }]),
    registryMirror: z
      .strictObject({
        /** Upstream used when neither X-Dragonfly-Registry nor ?ns= names one. */
        addr: z.string().default('https://index.docker.io'),
        /** CA bundle (PEM file) trusted for the upstream in addition to the system store. */
        certs: z.string().optional(),
        insecureSkipVerify: z.boolean().default(false),
        /**
         * Task ID of a blob = its digest (Dragonfly's enableTaskIDBasedBlobDigest): the same layer
         * through any registry, mirror or repository is one task. Per request:
         * `X-Dragonfly-Enable-Task-ID-Based-Blob-Digest: true|false`.
         */
        enableTaskIDBasedBlobDigest: z.boolean().default(false),
        /**
         * Private images stay private (agent/proxy/access.ts): before a registry blob is served
         * P2P, a HEAD of it upstream with the client's own credentials must succeed; a refusal is
         * relayed as the registry's status and challenge, an unreachable registry is a 502. false =
         * any client naming a cached digest gets it.
         */
        checkAccess: z.boolean().default(true),
        /** How long an allowed answer is remembered per credential, repository and blob. */
        accessCheckTTL: durationSchema.default(60_000),
      })
      .prefault({}),
    /**
     * HTTP-proxy mode: CONNECT to a host matching one of these regexes is intercepted (TLS terminated
     * with a leaf signed on the fly by server.caCert/caKey) so its blob GETs can go P2P; any other
     * CONNECT is tunneled untouched. Without a CA nothing is intercepted. After dfdaemon v1's hijackHTTPS.
     */
    hijackHTTPS: z
      .strictObject({
        hosts: z
          .array(
            z.strictObject({
              /** Regex matched against the CONNECT authority without the port (e.g. `^registry-1\\.docker\\.io$`). */
              regx: regexString,
              /**
               * Skip TLS verification towards this upstream (self-signed): on the proxy's direct path
               * and on back-to-source of its P2P tasks; the first matching entry decides. A seed peer
               * going back to source for such a host needs the same entry in its own config.
               */
              insecure: z.boolean().default(false),
            }),
          )
          .default([{ regx: '.*', insecure: false }]),
      })
      .prefault({}),
    /**
     * Hugging Face Hub mirror on this port (agent/proxy/hf-mirror.ts): with
     * `HF_ENDPOINT=http://127.0.0.1:4001` a Hub client's `/api/...` calls are passed to `endpoint`
     * and every `.../resolve/{rev}/{path}` file is served as the P2P task of
     * `hf://OWNER/REPO@COMMIT/PATH` (the task `damselfly get` makes of it). Registry paths (`/v2/`)
     * are not affected.
     */
    hfMirror: z
      .strictObject({
        /** false: `/api/...` and resolve paths get no special meaning (they go to the registry mirror's upstream). */
        enable: z.boolean().default(true),
        /** The hub the mirror answers for (and reads files from): huggingface.co or another mirror of it. */
        endpoint: z
          .string()
          .regex(/^https?:\/\/[^/?#]+\/*$/, 'expected http(s)://HOST[:PORT]')
          .default('https://huggingface.co'),
        /**
         * A ranged GET of a file the agent does not hold starts the whole file's task in the
         * background (paced by prefetchRateLimit until a client wants the rest). Hub clients read
         * files whole: `@huggingface/hub` probes `bytes=0-0` first, huggingface_hub resumes with a
         * range; the whole task is then the one other agents and `damselfly get` are given.
         */
        prefetch: z.boolean().default(true),
      })
      .prefault({}),
    /** Download the whole blob in the background after serving a Range request. */
    prefetch: z.boolean().default(false),
    prefetchRateLimit: sizeSchema.default(10 * 1024 ** 3),
    /** Never go to the origin from the proxy's P2P path (P2P only; direct fallback still applies). */
    disableBackToSource: z.boolean().default(false),
  })
  .prefault({});

export type ProxyConfig = z.output<typeof proxyConfigSchema>;
