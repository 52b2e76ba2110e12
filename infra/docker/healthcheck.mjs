#!/usr/bin/env node
// Container health check for every role: the image has one HEALTHCHECK, so it reads the role from
// PID 1's arguments (`node cli.js <role> ...`) and opens a TCP connection to that role's port.
// DAMSELFLY_HEALTH_PORT (and DAMSELFLY_HEALTH_HOST) override the port when a config moves it.
// Exit 0 = healthy, 1 = unhealthy (Docker's contract).
import { readFileSync } from 'node:fs';
import net from 'node:net';

/** Default port per role: the one that proves the role finished starting. */
const ROLE_PORTS = { manager: 8080, scheduler: 8002, agent: 4002, up: 4001 };

function roleOfPid1() {
  try {
    // DAMSELFLY_HEALTH_CMDLINE lets a test hand in another process's arguments.
    const args = readFileSync(process.env.DAMSELFLY_HEALTH_CMDLINE || '/proc/1/cmdline', 'utf8').split('\0');
    return args.find((a) => Object.hasOwn(ROLE_PORTS, a));
  } catch {
    return undefined;
  }
}

const port = Number(process.env.DAMSELFLY_HEALTH_PORT) || ROLE_PORTS[roleOfPid1() ?? ''];
if (!port) {
  process.stderr.write('healthcheck: unknown role and no DAMSELFLY_HEALTH_PORT\n');
  process.exit(1);
}
const host = process.env.DAMSELFLY_HEALTH_HOST || '127.0.0.1';
const socket = net.connect({ host, port, timeout: 3000 });
socket.on('connect', () => {
  socket.destroy();
  process.exit(0);
});
const fail = (why) => {
  process.stderr.write(`healthcheck: ${host}:${port} ${why}\n`);
  process.exit(1);
};
socket.on('timeout', () => fail('timed out'));
socket.on('error', (err) => fail(err.message));
