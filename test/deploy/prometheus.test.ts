/**
 * The Grafana dashboard and the alert rules (infra/monitoring/) against Debian's real Prometheus
 * scraping a real swarm: manager, scheduler, seed peer and 4 agents as processes on 127.0.0.1 (port 0),
 * one 16 MiB file pulled by every agent and one preheat job. Every dashboard expression is evaluated
 * through Prometheus' HTTP API and must return series with plausible values (each panel has its own
 * check: a panel without one fails); each alert is quiet on the healthy swarm and fires once its fault
 * is provoked (a normal peer sent to the origin, the scheduler killed); `promtool check rules` passes.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { readFileSync, statfsSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { roleRegistries, metricRows } from '../../infra/docs/render-metrics-reference.js';
import { cliPath, repoRoot } from '../support/cli.js';
import { MiB, fileSha256, startOrigin, type Origin } from '../support/origin.js';
import { agentConfigFor, apiGet, cleanupTempDirs, killAll, makeTempDir, spawnRole, waitFor, type RoleProcess } from '../support/procs.js';
import { requireOrSkip } from '../support/require.js';
import { ROOT_PASSWORD, http, pollJob, startManager, startScheduler } from '../manager/flow.js';

const DASHBOARD = path.join(repoRoot, 'infra/monitoring/grafana-dashboard.json');
const ALERTS = path.join(repoRoot, 'infra/monitoring/alerts.yaml');
const has = (bin: string) => spawnSync('sh', ['-c', `command -v ${bin}`]).status === 0;
const available = has('prometheus') && has('promtool');

interface Target {
  refId: string;
  expr: string;
}
interface Panel {
  title: string;
  targets: Target[];
}
interface Rule {
  alert: string;
  expr: string;
}
type Series = { metric: Record<string, string>; value: [number, string] };

const dashboard = JSON.parse(readFileSync(DASHBOARD, 'utf8')) as { panels: Panel[] };
const rules = (parse(readFileSync(ALERTS, 'utf8')) as { groups: Array<{ rules: Rule[] }> }).groups.flatMap((g) => g.rules);

/** Grafana's variables as the dashboard would fill them for a short test (the whole run fits in 5m). */
const expand = (expr: string) => expr.replaceAll('$__rate_interval', '2m').replaceAll('$__range', '5m');

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });
}

describe('metric names in the dashboard and the alerts', () => {
  it('exist in the registries (a typo or a rename fails here)', () => {
    const known = new Set(roleRegistries().flatMap((r) => metricRows(r.registry).map((m) => m.name)));
    const exprs = [...dashboard.panels.flatMap((p) => p.targets.map((t) => t.expr)), ...rules.map((r) => r.expr)];
    const used = new Set(exprs.flatMap((e) => [...e.matchAll(/\bdragonfly_[a-z0-9_]+/g)].map((m) => m[0])));
    expect(used.size).toBeGreaterThan(10);
    for (const name of used) expect(known.has(name) || known.has(name.replace(/_(bucket|count|sum)$/, '')), `${name} is no metric of any role`).toBe(true);
  });
});

describe.skipIf(!requireOrSkip(available, 'prometheus and promtool (Debian package prometheus)'))('dashboard and alerts on a real Prometheus', () => {
  let prom: ChildProcess | undefined;
  let promUrl = '';
  let origin: Origin;
  let manager: RoleProcess;
  let scheduler: RoleProcess;
  let seed: RoleProcess;
  let agents: RoleProcess[] = [];
  const SIZE = 16 * MiB;
  const PREHEAT_SIZE = 2 * MiB;

  const query = async (expr: string): Promise<Series[]> => {
    const res = await fetch(`${promUrl}/api/v1/query?query=${encodeURIComponent(expr)}`);
    const body = (await res.json()) as { status: string; error?: string; data: { resultType: string; result: Series[] } };
    if (body.status !== 'success') throw new Error(`${expr}: ${body.error}`);
    if (body.data.resultType !== 'vector') throw new Error(`${expr}: expected a vector, got ${body.data.resultType}`);
    return body.data.result;
  };
  const values = (s: Series[]) => s.map((x) => Number(x.value[1]));
  /** Waits until Prometheus has scraped every target twice since now (so counters are current). */
  const settle = async () => {
    const since = Date.now();
    await waitFor(
      async () => {
        const r = (await (await fetch(`${promUrl}/api/v1/targets?state=active`)).json()) as { data: { activeTargets: Array<{ lastScrape: string; health: string }> } };
        const t = r.data.activeTargets;
        return t.length > 0 && t.every((x) => Date.parse(x.lastScrape) > since + 600) ? true : undefined;
      },
      'two fresh scrapes of every target',
      15_000,
      200,
    );
  };

  beforeAll(async () => {
    origin = await startOrigin({ rate: 32 * MiB });
    const dir = makeTempDir('damselfly-prom-');
    const store = { kv: { kind: 'sqlite', path: path.join(dir, 'kv.db') }, queue: { kind: 'sqlite', path: path.join(dir, 'queue.db'), visibilityMs: 5_000 } };
    manager = await startManager(cliPath(), store, dir);
    const managerUrl = `http://${String(manager.ready.http)}`;
    scheduler = await startScheduler(cliPath(), managerUrl, store.queue);
    const sched = String(scheduler.ready.grpc);
    const gc = { gc: { interval: '500ms' } };
    const start = (name: string, isSeed: boolean) => {
      const d = makeTempDir(`damselfly-prom-${name}-`);
      return spawnRole('agent', agentConfigFor(name, d, [sched], { seed: isSeed }, gc), { dir: d, name });
    };
    seed = await start('seed', true);
    agents = await Promise.all([0, 1, 2, 3].map((i) => start(`agent-${i}`, false)));

    const port = await freePort();
    promUrl = `http://127.0.0.1:${port}`;
    const job = (name: string, procs: RoleProcess[], key: string) => ({
      job_name: name,
      static_configs: [{ targets: procs.map((p) => String(p.ready[key])) }],
    });
    const config = {
      global: { scrape_interval: '500ms', scrape_timeout: '400ms', evaluation_interval: '500ms' },
      rule_files: [ALERTS],
      scrape_configs: [job('manager', [manager], 'http'), job('scheduler', [scheduler], 'metrics'), job('seed-peer', [seed], 'metrics'), job('agent', agents, 'metrics')],
    };
    const configFile = path.join(dir, 'prometheus.yml');
    writeFileSync(configFile, JSON.stringify(config)); // JSON is YAML
    prom = spawn('prometheus', [`--config.file=${configFile}`, `--storage.tsdb.path=${path.join(dir, 'tsdb')}`, `--web.listen-address=127.0.0.1:${port}`, '--log.level=warn'], { stdio: ['ignore', 'ignore', 'pipe'] });
    let promLog = '';
    prom.stderr!.on('data', (b: Buffer) => (promLog = (promLog + b.toString()).slice(-4000)));
    await waitFor(async () => (await fetch(`${promUrl}/-/ready`).catch(() => undefined))?.ok || undefined, `prometheus ready (${promLog})`, 20_000, 200);
    await settle();

    // The work the dashboard shows: two files, each pulled by every agent at once, then one preheat.
    // Two, because a histogram series is born at its first observation (labels such as the task size
    // level are not known before), and rate() counts only what happens after a series exists.
    const out = makeTempDir('damselfly-prom-out-');
    for (const name of ['first', 'second']) {
      const file = `/prom/${name}.bin`;
      const url = origin.add(file, { size: SIZE, seed: `prom-${name}-${Date.now()}` });
      const results = await Promise.all(agents.map((a, i) => apiGet(a, url, path.join(out, `${name}-${i}.bin`), { timeoutMs: 120_000 })));
      for (const r of results) expect(r.code, r.stderr).toBe(0);
      for (let i = 0; i < agents.length; i++) expect(await fileSha256(path.join(out, `${name}-${i}.bin`))).toBe(origin.sha256(file));
      await settle();
    }

    const jwt = (await http('POST', `${managerUrl}/api/v1/users/signin`, { body: { name: 'root', password: ROOT_PASSWORD } })).json.token as string;
    await waitFor(async () => (await http('GET', `${managerUrl}/api/v1/schedulers/search?ip=127.0.0.1`)).status === 200 || undefined, 'scheduler registered', 15_000);
    const preheatUrl = origin.add('/prom/preheat.bin', { size: PREHEAT_SIZE, seed: `prom-pre-${Date.now()}` });
    const created = await http('POST', `${managerUrl}/api/v1/jobs`, { token: jwt, body: { type: 'preheat', args: { type: 'file', url: preheatUrl } } });
    expect(created.status, JSON.stringify(created.json)).toBe(200);
    const pat = await http('POST', `${managerUrl}/api/v1/personal-access-tokens`, {
      token: jwt,
      body: { name: 'poll', scopes: ['job'], expired_at: new Date(Date.now() + 3_600_000).toISOString() },
    });
    const done = await pollJob({ managerUrl, pat: pat.json.token }, created.json.id);
    expect(done.state, JSON.stringify(done.result)).toBe('SUCCESS');
    await settle();
  }, 180_000);

  afterAll(async () => {
    prom?.kill('SIGTERM');
    await killAll();
    await origin?.close();
    cleanupTempDirs();
  });

  it('promtool accepts the alert rules', () => {
    const r = spawnSync('promtool', ['check', 'rules', ALERTS], { encoding: 'utf8' });
    expect(r.status, r.stdout + r.stderr).toBe(0);
    expect(r.stdout).toContain(`SUCCESS: ${rules.length} rules found`);
  });

  it('every dashboard expression returns series with plausible values', async () => {
    const originBytes = origin.stats().bytes;
    expect(originBytes).toBe(2 * SIZE + PREHEAT_SIZE); // the origin sent each file once
    const storage = statfsSync(String(agents[0].dir));
    const checks: Record<string, (s: Series[]) => void> = {
      'P2P traffic ratio/A': (s) => {
        // 4 agents from peers, the seed from the origin: 4/5 of the big file, less the preheat's share.
        expect(values(s)[0]).toBeGreaterThan(0.5);
        expect(values(s)[0]).toBeLessThanOrEqual(1);
      },
      'Origin bytes per task/A': (s) => {
        // Three tasks (two pulls, one preheat), each sent once by the origin: its own byte count over three.
        expect(values(s)[0]).toBeGreaterThan((originBytes / 3) * 0.9);
        expect(values(s)[0]).toBeLessThan((originBytes / 3) * 1.1);
      },
      'Back-to-source rate/A': (s) => {
        const by = Object.fromEntries(s.map((x) => [x.metric.host_type, Number(x.value[1])]));
        expect(by.super).toBeGreaterThan(0); // the seed went to the origin (pull and preheat)
        expect(by.normal).toBe(0); // no agent had to
      },
      'Download traffic by type/A': (s) => {
        const by = Object.fromEntries(s.map((x) => [x.metric.type, Number(x.value[1])]));
        expect(by.REMOTE_PEER).toBeGreaterThan(by.BACK_TO_SOURCE);
        expect(by.BACK_TO_SOURCE).toBeGreaterThan(0);
      },
      'Active peers per scheduler/A': (s) => {
        expect(values(s).reduce((a, b) => a + b, 0)).toBeGreaterThanOrEqual(11); // 5 peers of each pull, 1 of the preheat
        expect(s.find((x) => x.metric.state === 'Succeeded')?.value[1]).toBeDefined();
      },
      'Hosts per scheduler/A': (s) => {
        const by = Object.fromEntries(s.map((x) => [x.metric.host_type, Number(x.value[1])]));
        expect(by).toEqual({ normal: 4, super: 1 });
      },
      'Piece download latency p99/A': (s) => {
        const by = Object.fromEntries(s.map((x) => [x.metric.type, Number(x.value[1])]));
        for (const t of ['REMOTE_PEER', 'BACK_TO_SOURCE']) {
          expect(by[t], t).toBeGreaterThan(0);
          expect(by[t], t).toBeLessThan(60_000);
        }
      },
      'Parent failures/A': (s) => {
        expect(s.length).toBe(1);
        expect(values(s)[0]).toBe(0);
      },
      'Job states/A': (s) => {
        const by = Object.fromEntries(s.map((x) => [x.metric.state, Number(x.value[1])]));
        expect(by.SUCCESS).toBeGreaterThanOrEqual(0.9); // one report (increase() extrapolates a little)
        expect(by.FAILURE).toBe(0);
      },
      'Job states/B': (s) => {
        const by = Object.fromEntries(s.map((x) => [x.metric.name, Number(x.value[1])]));
        expect(by.preheat).toBeGreaterThanOrEqual(0.9);
      },
      'Scheduler decisions/s/A': (s) => {
        expect(s.length).toBe(1);
        expect(values(s)[0]).toBeGreaterThan(0);
      },
      'Scheduling latency/A': (s) => {
        expect(s.map((x) => x.metric.quantile).sort()).toEqual(['0.5', '0.99']);
        for (const v of values(s)) {
          expect(v).toBeGreaterThanOrEqual(0);
          expect(v).toBeLessThan(5_000);
        }
      },
      'Task download duration p99 by size level/A': (s) => {
        // 16 MiB is Dragonfly's level 5 (16 to 32 MiB); the agents pulled two of them.
        const level5 = s.find((x) => x.metric.task_size_level === '5');
        expect(Number(level5?.value[1])).toBeGreaterThan(0);
        expect(Number(level5?.value[1])).toBeLessThan(120_000);
      },
      'Disk usage/A': (s) => {
        expect(s.length).toBe(5);
        const truth = 1 - storage.bfree / storage.blocks;
        for (const v of values(s)) expect(Math.abs(v - truth)).toBeLessThan(0.02);
      },
      'CPU per process/A': (s) => {
        expect(new Set(s.map((x) => x.metric.job))).toEqual(new Set(['manager', 'scheduler', 'seed-peer', 'agent']));
        expect(s.length).toBe(7);
        for (const v of values(s)) expect(v).toBeGreaterThan(0);
      },
      'Resident memory/A': (s) => {
        expect(s.length).toBe(7);
        for (const v of values(s)) {
          expect(v).toBeGreaterThan(16 * MiB);
          expect(v).toBeLessThan(4096 * MiB);
        }
      },
      'Event-loop lag p99/A': (s) => {
        expect(s.length).toBe(7);
        for (const v of values(s)) {
          expect(v).toBeGreaterThan(0);
          expect(v).toBeLessThan(5);
        }
      },
      'GC time share/A': (s) => {
        expect(s.length).toBe(7);
        for (const v of values(s)) {
          expect(v).toBeGreaterThanOrEqual(0);
          expect(v).toBeLessThan(0.5);
        }
      },
    };
    const seen = new Set<string>();
    const report: string[] = [];
    for (const panel of dashboard.panels) {
      for (const t of panel.targets) {
        const key = `${panel.title}/${t.refId}`;
        seen.add(key);
        const check = checks[key];
        expect(check, `panel "${key}" has no plausibility check in this test`).toBeDefined();
        const s = await query(expand(t.expr));
        report.push(`${key}: ${s.map((x) => `${JSON.stringify(x.metric)}=${Number(x.value[1]).toPrecision(3)}`).join(' ')}`);
        expect(s.length, `${key} returned no series: ${t.expr}`).toBeGreaterThan(0);
        try {
          check(s);
        } catch (err) {
          throw new Error(`${key} (${t.expr}) = ${JSON.stringify(s)}: ${(err as Error).message}`);
        }
      }
    }
    process.stderr.write(`dashboard on a 4-agent swarm:\n  ${report.join('\n  ')}\n`);
    expect([...seen].sort()).toEqual(Object.keys(checks).sort());
  });

  it('each alert is quiet on the healthy swarm and fires when its fault is provoked', async () => {
    const byName = Object.fromEntries(rules.map((r) => [r.alert, r]));
    const quiet = async (name: string) => expect(await query(byName[name].expr), name).toEqual([]);
    const firing = async (name: string) => waitFor(async () => ((await query(byName[name].expr)).length > 0 ? true : undefined), `${name} to fire`, 15_000, 250);
    expect(Object.keys(byName).sort()).toEqual(['DamselflyDiskWatermark', 'DamselflyProxyFallback', 'DamselflyPullBackToSource', 'DamselflySchedulerDown']);

    for (const name of ['DamselflyPullBackToSource', 'DamselflyProxyFallback', 'DamselflySchedulerDown']) await quiet(name);
    // The disk alert follows the real file system the agents store on.
    const st = statfsSync(String(agents[0].dir));
    const full = 1 - st.bfree / st.blocks > 0.9;
    expect((await query(byName.DamselflyDiskWatermark.expr)).length > 0).toBe(full);

    // Without its seed peer the scheduler must send a normal peer to the origin.
    await seed.stop();
    const url = origin.add('/prom/no-seed.bin', { size: 2 * MiB, seed: `prom-noseed-${Date.now()}` });
    const out = path.join(makeTempDir('damselfly-prom-out2-'), 'x.bin');
    const r = await apiGet(agents[0], url, out, { timeoutMs: 60_000 });
    expect(r.code, r.stderr).toBe(0);
    expect(await fileSha256(out)).toBe(origin.sha256('/prom/no-seed.bin'));
    await firing('DamselflyPullBackToSource');
    // Prometheus' own rule evaluation agrees (pending or firing: the rule has no `for`, so firing).
    await waitFor(
      async () => {
        const a = (await (await fetch(`${promUrl}/api/v1/alerts`)).json()) as { data: { alerts: Array<{ labels: { alertname: string }; state: string }> } };
        return a.data.alerts.some((x) => x.labels.alertname === 'DamselflyPullBackToSource' && x.state === 'firing') || undefined;
      },
      'Prometheus to report DamselflyPullBackToSource firing',
      15_000,
      250,
    );

    scheduler.kill('SIGKILL');
    await firing('DamselflySchedulerDown');
    const down = await query(byName.DamselflySchedulerDown.expr);
    expect(down.map((x) => x.metric.instance)).toEqual([String(scheduler.ready.metrics)]);
  }, 90_000);
});
