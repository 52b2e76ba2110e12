/**
 * Generates infra/docs/configuration.md, the configuration reference, from the roles' zod schemas:
 * structure and types from z.toJSONSchema, defaults from parsing an empty config (so durations
 * and sizes show as the role sees them), descriptions from the doc comments beside each key in
 * the schema source (read with the TypeScript compiler API). test/deploy/config-reference.test.ts
 * fails when the committed file is stale; `DAMSELFLY_UPDATE=1` makes it rewrite it.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';
import { z } from 'zod';
import { agentConfigSchema } from '../../agent/config.js';
import { kvConfigSchema, queueConfigSchema } from '../../adapters/store-config.js';
import { managerConfigSchema } from '../../control/manager/config.js';
import { schedulerConfigSchema } from '../../scheduler/config.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const repoRoot = path.resolve(here, '..', '..');
export const REFERENCE_FILE = path.join(here, 'configuration.md');

type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

/** Doc comments of object-literal keys, by the chain of keys from the top-level declaration: `agentConfigSchema.host.ip`. */
export function docComments(file: string): Map<string, string> {
  const text = readFileSync(path.join(repoRoot, file), 'utf8');
  const source = ts.createSourceFile(file, text, ts.ScriptTarget.ES2022, true);
  const out = new Map<string, string>();
  const visit = (node: ts.Node, chain: string[]) => {
    let next = chain;
    if (ts.isVariableDeclaration(node) && ts.isIdentifier(node.name)) next = [node.name.text];
    else if ((ts.isPropertyAssignment(node) || ts.isShorthandPropertyAssignment(node)) && (ts.isIdentifier(node.name) || ts.isStringLiteral(node.name))) {
      next = [...chain, node.name.text];
      const docs = ts.getJSDocCommentsAndTags(node).filter(ts.isJSDoc);
      const comment = docs.map((d) => ts.getTextOfJSDocComment(d.comment) ?? '').join(' ').replace(/\s+/g, ' ').trim();
      if (comment) out.set(next.join('.'), comment);
    }
    ts.forEachChild(node, (child) => visit(child, next));
  };
  visit(source, []);
  return out;
}

/** Where a role's keys are described: the source of each nested schema, by key prefix. */
interface Source {
  prefix: string;
  file: string;
  root: string;
}

interface Row {
  key: string;
  type: string;
  default: string;
  description: string;
}

const KIB = 1024;
function formatSize(bytes: number): string {
  for (const [unit, n] of [['TiB', KIB ** 4], ['GiB', KIB ** 3], ['MiB', KIB ** 2], ['KiB', KIB]] as const) {
    if (bytes >= n && bytes % n === 0) return `${bytes / n}${unit}`;
  }
  return String(bytes);
}
function formatDuration(ms: number): string {
  for (const [unit, n] of [['d', 86_400_000], ['h', 3_600_000], ['m', 60_000], ['s', 1000]] as const) {
    if (ms >= n && ms % n === 0) return `${ms / n}${unit}`;
  }
  return `${ms}ms`;
}

/** The kind of a JSON-schema node as a reader writes it. */
function typeOf(node: Json): { type: string; format?: 'size' | 'duration' } {
  if (node.anyOf) {
    const types = node.anyOf.map((n: Json) => n.type);
    if (types.length === 2 && types.includes('string')) {
      if (types.includes('integer')) return { type: 'size (bytes or e.g. `64MiB`)', format: 'size' };
      if (types.includes('number')) return { type: 'duration (seconds or e.g. `30s`, `5m`)', format: 'duration' };
    }
    return { type: node.anyOf.map((n: Json) => typeOf(n).type).join(' \\| ') };
  }
  if (node.enum) return { type: node.enum.map((v: unknown) => `\`${JSON.stringify(v)}\``).join(' \\| ') };
  if (node.const !== undefined) return { type: `\`${JSON.stringify(node.const)}\`` };
  if (node.type === 'array') return { type: `list of ${typeOf(node.items ?? {}).type}` };
  if (node.type === 'integer') {
    const max = node.maximum !== undefined && node.maximum < Number.MAX_SAFE_INTEGER ? node.maximum : undefined;
    const range = node.minimum !== undefined && max !== undefined ? ` ${node.minimum}–${max}` : node.minimum !== undefined ? ` ≥ ${node.minimum}` : '';
    return { type: `integer${range}` };
  }
  if (node.type === 'string' && node.format === 'uri') return { type: 'URL' };
  if (node.type === 'string' && node.pattern) return { type: `string (\`${node.pattern}\`)` };
  return { type: node.type ?? 'any' };
}

function formatDefault(value: unknown, format?: 'size' | 'duration'): string {
  if (value === undefined) return '';
  if (format === 'size' && typeof value === 'number') return `\`${formatSize(value)}\``;
  if (format === 'duration' && typeof value === 'number') return `\`${formatDuration(value)}\``;
  const text = JSON.stringify(value);
  return `\`${text.length > 60 ? text.slice(0, 57) + '…' : text}\``;
}

/** Defaults that depend on the machine the config is read on: documented, not printed. */
const MACHINE_DEFAULTS: Record<string, string> = {
  'host.hostname': 'this machine\'s hostname',
  'host.ip': 'this machine\'s first non-loopback IPv4 address',
};

/** Keys whose schema is `unknown` because another module parses them. */
const TYPE_OVERRIDES: Record<string, string> = {
  'store.kv': '[KV store](#kv-stores)',
  'store.queue': '[queue store](#queue-stores)',
  'job.queue': '[queue store](#queue-stores)',
};

/**
 * Descriptions for keys whose schema has no doc comment yet (a doc comment beside the key in the
 * schema wins over these). Keyed by `<root>:<key>`.
 */
const FALLBACK_DOCS: Record<string, string> = {
  'agentConfigSchema:host.hostname': 'Name this host announces to the scheduler and the manager.',
  'agentConfigSchema:host.ip': 'Address other peers use to reach this host\'s piece server.',
  'agentConfigSchema:host.idc': 'Data center, matched against scheduler cluster scopes.',
  'agentConfigSchema:host.location': 'Location (e.g. `region|zone`), matched against scheduler cluster scopes.',
  'agentConfigSchema:seedPeer.enable': 'Run as a seed peer: the scheduler sends seed peers back to the origin first.',
  'agentConfigSchema:storage.dir': 'Piece cache and task metadata directory.',
  'agentConfigSchema:scheduler.addrs': 'Schedulers (`host:port`); tasks are spread over them by consistent hash of the task ID.',
  'agentConfigSchema:scheduler.announceInterval': 'How often the host announces itself to its scheduler.',
  'agentConfigSchema:scheduler.scheduleTimeout': 'Wait this long for parents before going back to the origin.',
  'agentConfigSchema:scheduler.enableBackToSource': 'Allow downloading from the origin when P2P cannot serve.',
  'agentConfigSchema:manager.addr': 'Manager URL, used to discover the schedulers of this host\'s cluster.',
  'agentConfigSchema:manager.refreshInterval': 'How often the scheduler list is refreshed from the manager.',
  'agentConfigSchema:upload.server': 'gRPC (Dfdaemon service) listener.',
  'agentConfigSchema:upload.pieceServer': 'HTTP listener other peers fetch pieces from.',
  'agentConfigSchema:upload.rateLimit': 'Upload bandwidth limit per second.',
  'agentConfigSchema:upload.concurrentLimit': 'Concurrent piece uploads.',
  'agentConfigSchema:download.server.socket': 'Unix socket `damselfly get` talks to.',
  'agentConfigSchema:download.rateLimit': 'Download bandwidth limit per second.',
  'agentConfigSchema:download.backToSourceRateLimit': 'Bandwidth limit per second for downloads from the origin.',
  'agentConfigSchema:download.concurrentPieceCount': 'Pieces downloaded in parallel per task.',
  'agentConfigSchema:download.pieceTimeout': 'A piece not received within this is retried from another parent.',
  'agentConfigSchema:metrics.server': 'Prometheus `/metrics` listener.',
  'agentConfigSchema:gc.interval': 'How often the cache is collected.',
  'agentConfigSchema:gc.taskTTL': 'Tasks unused this long are removed.',
  'agentConfigSchema:gc.diskHighThresholdPercent': 'Above this disk usage, collect least recently used tasks ...',
  'agentConfigSchema:gc.diskLowThresholdPercent': '... down to this usage.',
  'proxyConfigSchema:server.caKey': 'PEM private key of `caCert`.',
  'proxyConfigSchema:rules': 'Which requests go through P2P (the others pass straight through to the upstream).',
  'proxyConfigSchema:registryMirror.insecureSkipVerify': 'Skip TLS verification of the upstream registry.',
  'proxyConfigSchema:prefetchRateLimit': 'Bandwidth limit per second of prefetch downloads.',
  'schedulerConfigSchema:server': 'gRPC listener for agents.',
  'schedulerConfigSchema:metrics': 'Prometheus `/metrics` listener.',
  'schedulerConfigSchema:scheduling.retryInterval': 'Pause between scheduling rounds without parents.',
  'schedulerConfigSchema:gc.interval': 'How often expired peers, tasks and hosts are collected.',
  'schedulerConfigSchema:manager.addr': 'Manager URL; the scheduler registers there and takes jobs from its cluster\'s queue.',
  'schedulerConfigSchema:manager.keepAliveInterval': 'Keep-alive interval towards the manager.',
  'schedulerConfigSchema:manager.clusterId': 'Scheduler cluster this scheduler belongs to.',
  'schedulerConfigSchema:job.enable': 'Consume preheat and task jobs from the queue.',
  'schedulerConfigSchema:job.queue': 'Queue the manager sends this cluster\'s jobs to (the manager\'s `store.queue`).',
  'managerConfigSchema:server': 'HTTP listener (REST API, Harbor preheat, `/metrics`, `/healthy`).',
  'managerConfigSchema:store.dataDir': 'Directory of the default SQLite store.',
  'managerConfigSchema:store.kv': 'Key-value store for all state.',
  'managerConfigSchema:store.queue': 'Queue for jobs towards schedulers.',
  'stores:url': 'Connection URL (a password may come from the driver\'s environment, e.g. `PGPASSWORD`).',
  'stores:path': 'Database file.',
  'stores:timeoutMs': 'Per-operation timeout; the store reports Unavailable after it.',
  'stores:schema': 'PostgreSQL schema holding the tables.',
  'stores:poolSize': 'Connections in the pool.',
  'stores:prefix': 'Prefix of every Redis key.',
  'stores:table': 'DynamoDB table (created when missing).',
  'stores:region': 'AWS region (or `AWS_REGION`).',
  'stores:endpoint': 'Endpoint override (or `AWS_ENDPOINT_URL_DYNAMODB` / `AWS_ENDPOINT_URL_SQS`), e.g. LocalStack.',
  'stores:queuePrefix': 'Prefix of every SQS queue name.',
  'stores:projectId': 'Google Cloud project.',
  'stores:collectionPrefix': 'Prefix of every Firestore collection.',
  'stores:emulatorHost': 'Firestore emulator `host:port` (or `FIRESTORE_EMULATOR_HOST`).',
};

function describeKey(key: string, sources: Source[], comments: Map<string, Map<string, string>>): string {
  // The most specific source whose prefix covers the key.
  const matching = sources.filter((s) => s.prefix === '' || key === s.prefix || key.startsWith(s.prefix + '.')).sort((a, b) => b.prefix.length - a.prefix.length);
  for (const s of matching) {
    const rest = s.prefix ? key.slice(s.prefix.length).replace(/^\./, '') : key;
    const doc = comments.get(s.file)?.get(rest ? `${s.root}.${rest}` : s.root);
    if (doc) return doc;
  }
  for (const s of matching) {
    const rest = s.prefix ? key.slice(s.prefix.length).replace(/^\./, '') : key;
    const root = s.file === 'adapters/store-config.ts' ? 'stores' : s.root;
    const doc = FALLBACK_DOCS[`${root}:${rest}`];
    if (doc) return doc;
  }
  return '';
}

/** Rows for every key of an object schema, depth first. */
function rowsOf(node: Json, defaults: unknown, prefix: string, sources: Source[], comments: Map<string, Map<string, string>>): Row[] {
  const rows: Row[] = [];
  for (const [name, child] of Object.entries<Json>(node.properties ?? {})) {
    const key = prefix ? `${prefix}.${name}` : name;
    const value = (defaults as Record<string, unknown> | undefined)?.[name];
    const isObject = child.type === 'object' && child.properties;
    const itemObject = child.type === 'array' && child.items?.type === 'object' && child.items.properties;
    const { type: inferred, format } = typeOf(child);
    const type = TYPE_OVERRIDES[key] ?? inferred;
    if (isObject) {
      const doc = describeKey(key, sources, comments);
      if (doc) rows.push({ key, type: 'section', default: '', description: doc });
      rows.push(...rowsOf(child, value, key, sources, comments));
      continue;
    }
    rows.push({
      key,
      type: itemObject ? 'list of objects (below)' : type,
      default: MACHINE_DEFAULTS[key] ? `(${MACHINE_DEFAULTS[key]})` : formatDefault(value, format),
      description: describeKey(key, sources, comments),
    });
    if (itemObject) rows.push(...rowsOf(child.items, undefined, `${key}[]`, sources, comments));
  }
  return rows;
}

function table(rows: Row[]): string {
  const esc = (s: string) => s.replace(/\|/g, '\\|').replace(/\\\\\|/g, '\\|');
  const lines = ['| key | type | default | description |', '|---|---|---|---|'];
  for (const r of rows) lines.push(`| \`${r.key}\` | ${r.type} | ${r.default} | ${esc(r.description)} |`);
  return lines.join('\n');
}

const ROLES = [
  {
    title: 'Agent and seed peer',
    command: 'damselfly agent --config FILE',
    schema: agentConfigSchema as z.ZodType,
    sources: [
      { prefix: '', file: 'agent/config.ts', root: 'agentConfigSchema' },
      { prefix: 'proxy', file: 'agent/proxy-config.ts', root: 'proxyConfigSchema' },
      { prefix: 'proxy.rules[]', file: 'agent/proxy-config.ts', root: 'proxyRuleSchema' },
      { prefix: 'tracing', file: 'adapters/tracing.ts', root: 'tracingConfigSchema' },
    ],
    note: 'A seed peer is an agent with `seedPeer.enable: true`. Ports: 4000 gRPC, 4001 mirror/proxy, 4002 metrics, 4005 pieces.',
  },
  {
    title: 'Scheduler',
    command: 'damselfly scheduler --config FILE',
    schema: schedulerConfigSchema as z.ZodType,
    sources: [{ prefix: '', file: 'scheduler/config.ts', root: 'schedulerConfigSchema' }, { prefix: 'tracing', file: 'adapters/tracing.ts', root: 'tracingConfigSchema' }],
    note: '`job.queue` takes a [queue store](#queue-stores). With `manager.addr` set, the scheduler needs `DAMSELFLY_SCHEDULER_SECRET` (the manager\'s `auth.schedulerSecret`).',
  },
  {
    title: 'Manager',
    command: 'damselfly manager --config FILE',
    schema: managerConfigSchema as z.ZodType,
    sources: [{ prefix: '', file: 'control/manager/config.ts', root: 'managerConfigSchema' }, { prefix: 'tracing', file: 'adapters/tracing.ts', root: 'tracingConfigSchema' }],
    note: '`store.kv` takes a [KV store](#kv-stores), `store.queue` a [queue store](#queue-stores); without them the manager uses SQLite under `store.dataDir`. On AWS Lambda the same document is read from `DAMSELFLY_MANAGER_CONFIG` (YAML or JSON text).',
  },
];

/** One section per store kind of a discriminated union. */
function storeSections(title: string, schema: z.ZodType, comments: Map<string, Map<string, string>>): string {
  const json = z.toJSONSchema(schema, { io: 'input', unrepresentable: 'any' }) as Json;
  const parts: string[] = [];
  for (const option of json.oneOf ?? json.anyOf ?? []) {
    const kind = option.properties.kind.const as string;
    const defaults = schema.parse({ kind, ...requiredPlaceholders(option) }) as Record<string, unknown>;
    const sources: Source[] = [
      { prefix: '', file: 'adapters/store-config.ts', root: kind },
      { prefix: '', file: 'adapters/store-config.ts', root: 'queueCommon' },
    ];
    const rows = rowsOf(option, defaults, '', sources, comments).filter((r) => r.key !== 'kind');
    for (const r of rows) if ((option.required ?? []).includes(r.key)) r.default = '(required)';
    parts.push(`### ${title}: \`kind: ${kind}\`\n\n${rows.length ? table(rows) : 'No options.'}\n`);
  }
  return parts.join('\n');
}

/** Minimal values for required options, so the defaults of the others can be read. */
function requiredPlaceholders(option: Json): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const key of option.required ?? []) {
    if (key === 'kind') continue;
    const p = option.properties[key];
    out[key] = p.format === 'uri' ? 'http://placeholder' : p.pattern ? 'placeholder' : p.type === 'number' || p.type === 'integer' ? 1 : 'placeholder';
  }
  return out;
}

/** The whole reference as markdown. */
export function renderConfigReference(): string {
  const files = new Set(['adapters/store-config.ts', ...ROLES.flatMap((r) => r.sources.map((s) => s.file))]);
  const comments = new Map([...files].map((f) => [f, docComments(f)]));
  const out: string[] = [
    '<!-- Generated by infra/docs/render-config-reference.ts from the zod schemas. Do not edit: run',
    '     `DAMSELFLY_UPDATE=1 npx vitest run test/deploy/config-reference.test.ts`. -->',
    '# Configuration reference',
    '',
    'Every role reads one YAML file (`--config FILE`). Every key is optional and has the default shown; an',
    'unknown key is an error that names it. Durations accept seconds or `250ms`, `30s`, `5m`, `1h`, `1d`;',
    'sizes accept bytes or `4KiB`, `64MiB`, `1GiB` (or decimal `1GB`).',
    '',
    'Secrets come from the environment: `DAMSELFLY_ROOT_PASSWORD`, `DAMSELFLY_JWT_SECRET` and',
    '`DAMSELFLY_SCHEDULER_SECRET` (manager), `DAMSELFLY_SCHEDULER_SECRET` (scheduler). The AWS stores',
    'honour `AWS_REGION`, `AWS_ENDPOINT_URL_DYNAMODB` and `AWS_ENDPOINT_URL_SQS` (e.g. LocalStack).',
    '',
  ];
  for (const role of ROLES) {
    const json = z.toJSONSchema(role.schema, { io: 'input', unrepresentable: 'any' }) as Json;
    const defaults = role.schema.parse({});
    out.push(`## ${role.title}: \`${role.command}\``, '', role.note, '', table(rowsOf(json, defaults, '', role.sources, comments)), '');
  }
  out.push('## KV stores', '', storeSections('KV store', kvConfigSchema, comments));
  out.push('## Queue stores', '', storeSections('Queue store', queueConfigSchema, comments));
  return out.join('\n').replace(/\n{3,}/g, '\n\n').trimEnd() + '\n';
}
