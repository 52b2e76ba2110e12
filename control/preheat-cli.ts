/**
 * `damselfly preheat IMAGE|URL`: creates a preheat job through the manager's open API with a
 * personal access token, shows progress on stderr, and exits 0 on SUCCESS, 1 on FAILURE (with the
 * error of every blob that failed), 2 on a usage error. Meant for CI: warm the seed peers before a
 * rollout pulls the image everywhere.
 */
import { ManagerClient } from '../adapters/manager-client.js';
import { parseCommand } from '../adapters/cli.js';
import { parseDuration } from '../adapters/config.js';
import { errorMessage } from '../adapters/errors.js';
import { MANIFEST_URL } from '../scheduler/protocol/job.js';

const HELP = `usage: damselfly preheat IMAGE|URL --manager URL --token TOKEN [options]

IMAGE is a reference such as 127.0.0.1:5000/team/app:1.0 or registry.example.com/app@sha256:...
(plain HTTP for loopback registries or with --insecure); URL is a manifest URL
(<scheme>://<registry>/v2/<repo>/manifests/<ref>) or, with --type file, any file URL.

  --manager URL        the manager (or $DAMSELFLY_MANAGER)
  --token TOKEN        personal access token with the "job" scope (or $DAMSELFLY_TOKEN)
  --type image|file    default: image, or file for a URL that is not a manifest URL
  --platform OS/ARCH   image platform for a multi-platform index (default linux/amd64)
  --scope S            single_seed_peer (default) | all_seed_peers | all_peers
  --timeout D          give up after D (e.g. 30m; default: the manager's, 60m)
  --username U --password P   registry credentials (or $DAMSELFLY_REGISTRY_PASSWORD)
  --header "K: V"      extra header for the registry/origin (repeatable)
  --cluster N          only this scheduler cluster (repeatable; default: every cluster)
  --insecure           plain HTTP to the registry
  --interval D         poll interval (default 1s)
  -h, --help           this help
`;


function isLoopback(host: string): boolean {
  const h = host.replace(/:\d+$/, '').replace(/^\[|\]$/g, '');
  return h === 'localhost' || h === '::1' || /^127\./.test(h);
}

/** Turns an image reference into its manifest URL (docker.io names get Docker Hub's registry). Throws Error on a malformed one. */
export function manifestUrlOf(ref: string, insecure = false): string {
  const at = ref.indexOf('@');
  let name = at >= 0 ? ref.slice(0, at) : ref;
  let reference = at >= 0 ? ref.slice(at + 1) : 'latest';
  if (at < 0) {
    const colon = name.lastIndexOf(':');
    if (colon > name.lastIndexOf('/')) {
      reference = name.slice(colon + 1);
      name = name.slice(0, colon);
    }
  }
  const slash = name.indexOf('/');
  const first = slash >= 0 ? name.slice(0, slash) : '';
  let registry: string;
  let repo: string;
  if (first && (first.includes('.') || first.includes(':') || first === 'localhost')) {
    registry = first;
    repo = name.slice(slash + 1);
  } else {
    registry = 'registry-1.docker.io';
    repo = first ? name : `library/${name}`;
  }
  if (registry === 'docker.io') registry = 'registry-1.docker.io';
  if (!repo || !/^[a-z0-9]+(?:[._-][a-z0-9]+)*(?:\/[a-z0-9]+(?:[._-][a-z0-9]+)*)*$/.test(repo)) throw new Error(`invalid image reference "${ref}"`);
  if (!reference) throw new Error(`invalid image reference "${ref}"`);
  const scheme = insecure || isLoopback(registry) ? 'http' : 'https';
  return `${scheme}://${registry}/v2/${repo}/manifests/${reference}`;
}

interface JobView {
  id: number;
  state: string;
  result?: { job_states?: Array<{ state: string; error: string; scheduler_cluster_id: number; progress?: { done: number; total: number }; results?: Array<{ success_tasks?: unknown[]; failure_tasks?: Array<{ url: string; hostname: string; description: string }> }> }> };
}

export async function main(argv: string[]): Promise<number> {
  const parsed = parseCommand('preheat', HELP, {
    args: argv,
    allowPositionals: true,
    options: {
      manager: { type: 'string' },
      token: { type: 'string' },
      type: { type: 'string' },
      platform: { type: 'string' },
      scope: { type: 'string' },
      timeout: { type: 'string' },
      username: { type: 'string' },
      password: { type: 'string' },
      header: { type: 'string', multiple: true },
      cluster: { type: 'string', multiple: true },
      insecure: { type: 'boolean' },
      interval: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (typeof parsed === 'number') return parsed;
  const { values, positionals } = parsed;
  const usage = (msg: string): number => {
    process.stderr.write(`damselfly preheat: ${msg}\n\n${HELP}`);
    return 2;
  };
  if (positionals.length !== 1) return usage('expected exactly one IMAGE or URL');
  const manager = (values.manager as string | undefined) ?? process.env.DAMSELFLY_MANAGER;
  const token = (values.token as string | undefined) ?? process.env.DAMSELFLY_TOKEN;
  if (!manager) return usage('--manager is required');
  if (!token) return usage('--token is required');
  const target = positionals[0];

  let url: string;
  let type = values.type as string | undefined;
  try {
    if (/^[a-z][a-z0-9+.-]*:\/\//i.test(target)) {
      url = target;
      type ??= MANIFEST_URL.test(target) ? 'image' : 'file';
    } else {
      if (type === 'file') return usage('--type file needs a URL');
      url = manifestUrlOf(target, Boolean(values.insecure));
      type = 'image';
    }
  } catch (err) {
    return usage(errorMessage(err));
  }
  if (type !== 'image' && type !== 'file') return usage('--type must be image or file');

  const headers: Record<string, string> = {};
  for (const h of (values.header as string[] | undefined) ?? []) {
    const i = h.indexOf(':');
    if (i <= 0) return usage(`--header "${h}": expected "Name: value"`);
    headers[h.slice(0, i).trim()] = h.slice(i + 1).trim();
  }
  let timeoutNs = 0;
  let intervalMs = 1_000;
  try {
    if (values.timeout) timeoutNs = parseDuration(values.timeout as string) * 1e6;
    if (values.interval) intervalMs = parseDuration(values.interval as string);
  } catch (err) {
    return usage(errorMessage(err));
  }
  const clusters = ((values.cluster as string[] | undefined) ?? []).map(Number);
  if (clusters.some((c) => !Number.isInteger(c) || c < 1)) return usage('--cluster must be a positive integer');

  const body = {
    type: 'preheat',
    args: {
      type,
      url,
      headers,
      platform: values.platform ?? '',
      scope: values.scope ?? '',
      username: values.username ?? '',
      password: values.password ?? process.env.DAMSELFLY_REGISTRY_PASSWORD ?? '',
      timeout: timeoutNs,
    },
    scheduler_cluster_ids: clusters.length > 0 ? clusters : null,
  };
  const client = new ManagerClient(manager, { token, timeoutMs: 30_000 });
  const call = (method: string, path: string, payload?: unknown) => client.request(method, path, payload);

  let created;
  try {
    created = await call('POST', '/oapi/v1/jobs', body);
  } catch (err) {
    process.stderr.write(`damselfly preheat: ${errorMessage(err)}\n`);
    return 1;
  }
  if (created.status !== 200) {
    const fields = created.json?.fields ? ` (${Object.entries(created.json.fields).map(([k, v]) => `${k}: ${v}`).join('; ')})` : '';
    process.stderr.write(`damselfly preheat: manager answered ${created.status}: ${created.json?.message ?? JSON.stringify(created.json)}${fields}\n`);
    return 1;
  }
  const id = (created.json as JobView).id;
  process.stderr.write(`preheat job ${id} created for ${url}\n`);

  let stop = false;
  const onSignal = () => {
    stop = true;
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  let lastLine = '';
  let job: JobView = created.json;
  try {
    while (job.state === 'PENDING') {
      if (stop) {
        process.stderr.write(`damselfly preheat: interrupted; job ${id} keeps running on the manager\n`);
        return 130;
      }
      await new Promise((r) => setTimeout(r, intervalMs));
      try {
        const r = await call('GET', `/oapi/v1/jobs/${id}`);
        if (r.status !== 200) {
          process.stderr.write(`damselfly preheat: GET job ${id} answered ${r.status}\n`);
          if (r.status === 404 || r.status === 401 || r.status === 403) return 1;
          continue;
        }
        job = r.json;
      } catch (err) {
        // The manager may restart mid-job: keep polling.
        process.stderr.write(`damselfly preheat: ${errorMessage(err)}; retrying\n`);
        continue;
      }
      const parts = (job.result?.job_states ?? []).map((s) => `cluster ${s.scheduler_cluster_id}: ${s.state}${s.progress ? ` ${s.progress.done}/${s.progress.total} blobs` : ''}`);
      const line = `job ${id}: ${job.state}${parts.length ? ` (${parts.join(', ')})` : ''}`;
      if (line !== lastLine) process.stderr.write(line + '\n');
      lastLine = line;
    }
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
  const states = job.result?.job_states ?? [];
  const ok = states.reduce((n, s) => n + (s.results ?? []).reduce((m, r) => m + (r.success_tasks?.length ?? 0), 0), 0);
  if (job.state === 'SUCCESS') {
    process.stdout.write(`${JSON.stringify({ id, state: job.state, url, success_tasks: ok })}\n`);
    return 0;
  }
  process.stderr.write(`preheat job ${id} ${job.state}\n`);
  for (const s of states) {
    if (s.error) process.stderr.write(`cluster ${s.scheduler_cluster_id}: ${s.error}\n`);
    for (const r of s.results ?? []) for (const f of r.failure_tasks ?? []) process.stderr.write(`  ${f.url} on ${f.hostname || '(no peer)'}: ${f.description}\n`);
  }
  process.stdout.write(`${JSON.stringify({ id, state: job.state, url, success_tasks: ok })}\n`);
  return 1;
}
