/**
 * The console's page shell and view helpers, server-rendered with hono/html: every interpolation is
 * escaped unless it is itself an html fragment, so nothing a scheduler or user sent can become markup.
 */
import { html } from 'hono/html';
import { formatSize } from '../../../adapters/config.js';

export type Fragment = ReturnType<typeof html>;

export interface Viewer {
  name: string;
  role: 'root' | 'guest';
  userId: number;
  csrf: string;
}

export const NAV: ReadonlyArray<[string, string]> = [
  ['/', 'Overview'],
  ['/clusters', 'Clusters'],
  ['/schedulers', 'Schedulers & seed peers'],
  ['/peers', 'Peers'],
  ['/tasks', 'Tasks'],
  ['/jobs', 'Jobs'],
  ['/tokens', 'Tokens'],
  ['/users', 'Users'],
  ['/config', 'Configuration'],
];

export function page(opts: { title: string; path: string; viewer?: Viewer; body: Fragment; flash?: { kind: 'ok' | 'error'; text: string } }): Fragment {
  const { title, path, viewer, body, flash } = opts;
  const current = (href: string) => (href === '/' ? path === '/' : path === href || path.startsWith(`${href}/`));
  return html`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${title} · Damselfly</title>
<link rel="stylesheet" href="/assets/console.css">
<script src="/assets/console.js" defer></script>
</head>
<body data-poll="3000">
<a class="skip" href="#main">Skip to content</a>
<header>
<a class="brand" href="/">Damselfly</a>
${viewer
  ? html`<nav aria-label="Main">${NAV.map(([href, label]) => html`<a href="${href}"${current(href) ? html` aria-current="page"` : ''}>${label}</a>`)}</nav>
<div class="who"><span>${viewer.name} (${viewer.role})</span>
<form class="inline" method="post" action="/signout">${csrfField(viewer)}<button type="submit">Sign out</button></form></div>`
  : ''}
</header>
<main id="main">
<h1>${title}</h1>
${flash ? html`<div class="flash ${flash.kind}" role="${flash.kind === 'error' ? 'alert' : 'status'}">${flash.text}</div>` : ''}
${body}
</main>
</body>
</html>`;
}

export const csrfField = (v: Viewer): Fragment => html`<input type="hidden" name="_csrf" value="${v.csrf}">`;

export function fmtBytes(n: number | null | undefined): string {
  return n === null || n === undefined || n < 0 ? '—' : formatSize(n, ' ');
}

export const fmtPct = (x: number | null | undefined): string => (x === null || x === undefined ? '—' : `${(x * 100).toFixed(1)} %`);

export function fmtAgo(iso: string | null | undefined, nowMs: number): string {
  if (!iso) return '—';
  const s = Math.max(0, Math.round((nowMs - Date.parse(iso)) / 1000));
  return s < 60 ? `${s} s ago` : s < 3600 ? `${Math.round(s / 60)} min ago` : `${Math.round(s / 3600)} h ago`;
}

export const state = (s: string): Fragment => html`<span class="state-${s}">${s}</span>`;

export interface GraphPeer {
  id: string;
  host_name: string;
  type: string;
  state: string;
  finished_pieces: number;
  back_to_source: boolean;
}

/**
 * The task's parent graph as inline SVG (no script): peers in columns by depth from the peers
 * with no parent (the origin readers), parent → child arrows between them.
 */
export function graphSvg(peers: GraphPeer[], edges: { parent: string; child: string }[], totalPieces: number): Fragment {
  if (peers.length === 0) return html`<p class="muted">No peers reported for this task.</p>`;
  const ids = new Set(peers.map((p) => p.id));
  const parents = new Map<string, string[]>();
  for (const e of edges) if (ids.has(e.parent) && ids.has(e.child)) parents.set(e.child, [...(parents.get(e.child) ?? []), e.parent]);
  const depth = new Map<string, number>();
  const depthOf = (id: string, seen = new Set<string>()): number => {
    const known = depth.get(id);
    if (known !== undefined) return known;
    if (seen.has(id)) return 0;
    seen.add(id);
    const ps = parents.get(id) ?? [];
    const d = ps.length === 0 ? 0 : 1 + Math.max(...ps.map((p) => depthOf(p, seen)));
    depth.set(id, d);
    return d;
  };
  const cols = new Map<number, GraphPeer[]>();
  for (const p of peers) {
    const d = depthOf(p.id);
    cols.set(d, [...(cols.get(d) ?? []), p]);
  }
  const W = 190;
  const H = 56;
  const NW = 160;
  const NH = 40;
  const pos = new Map<string, { x: number; y: number }>();
  let rows = 0;
  for (const [d, list] of cols) {
    list.forEach((p, i) => pos.set(p.id, { x: 10 + d * W, y: 10 + i * H }));
    rows = Math.max(rows, list.length);
  }
  const width = 20 + Math.max(...cols.keys()) * W + NW;
  const height = 20 + rows * H;
  const shown = edges.filter((e) => pos.has(e.parent) && pos.has(e.child));
  return html`<svg class="graph" role="img" aria-label="Parent graph: ${peers.length} peers, ${shown.length} parent edges" viewBox="0 0 ${width} ${height}" width="${width}" height="${height}">
<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#7a869a"/></marker></defs>
${shown.map((e) => {
  const a = pos.get(e.parent)!;
  const b = pos.get(e.child)!;
  const x1 = a.x + NW;
  const y1 = a.y + NH / 2;
  const x2 = b.x;
  const y2 = b.y + NH / 2;
  const mx = (x1 + x2) / 2;
  return html`<path class="edge" data-edge="${e.parent}->${e.child}" d="M${x1},${y1} C${mx},${y1} ${mx},${y2} ${x2},${y2}" marker-end="url(#arrow)"/>`;
})}
${peers.map((p) => {
  const at = pos.get(p.id)!;
  const cls = `node${p.type !== 'normal' ? ' seed' : ''}${p.back_to_source ? ' origin' : ''}`;
  const progress = totalPieces > 0 ? `${p.finished_pieces}/${totalPieces}` : `${p.finished_pieces}`;
  return html`<g data-peer="${p.id}"><title>${p.id} (${p.state})</title><rect class="${cls}" x="${at.x}" y="${at.y}" width="${NW}" height="${NH}" rx="5"/>
<text x="${at.x + 8}" y="${at.y + 16}">${p.host_name.slice(0, 22)}${p.back_to_source ? ' ⇠ origin' : ''}</text>
<text x="${at.x + 8}" y="${at.y + 32}">${p.state} · ${progress}</text></g>`;
})}
</svg>`;
}
