// A real livereplay daemon for the JavaScript tests: `python -m livereplay_server`
// as a child process on a fixed loopback port, so it can be killed (-9), stopped
// (SIGSTOP) and restarted in place. LIVEREPLAY_PYTHON names the interpreter
// (default: the repository's .venv).
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import net from 'node:net';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
export const PYTHON = process.env.LIVEREPLAY_PYTHON ?? `${ROOT}.venv/bin/python`;

const running = new Set();
process.on('exit', () => {
  for (const child of running) child.kill('SIGKILL');
});

export async function freePort() {
  const server = net.createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address();
  server.close();
  await once(server, 'close');
  return port;
}

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Poll `predicate` until it is true; fail with `what` after `timeoutMs`. */
export async function waitFor(predicate, what, timeoutMs = 10_000) {
  const deadline = Date.now() + timeoutMs;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

export class Daemon {
  constructor(args = [], port = null) {
    this.args = args;
    this.port = port;
    this.child = null;
    this.output = '';
  }

  get httpUrl() {
    return `http://127.0.0.1:${this.port}`;
  }

  async start() {
    this.port ??= await freePort();
    const child = spawn(
      PYTHON,
      ['-m', 'livereplay_server', '--host', '127.0.0.1', '--port', String(this.port),
        '--log-level', 'warning', ...this.args],
      { stdio: ['ignore', 'pipe', 'pipe'], cwd: ROOT },
    );
    this.child = child;
    running.add(child);
    child.on('exit', () => running.delete(child));
    const keep = (chunk) => {
      this.output = (this.output + chunk).slice(-8000);
    };
    child.stdout.on('data', keep);
    child.stderr.on('data', keep);
    const deadline = Date.now() + 20_000;
    while (Date.now() < deadline) {
      if (child.exitCode !== null) throw new Error(`daemon exited: ${this.output}`);
      try {
        const response = await fetch(`${this.httpUrl}/healthz`);
        if (response.ok) return this;
      } catch {
        // not listening yet
      }
      await sleep(50);
    }
    throw new Error(`daemon did not start: ${this.output}`);
  }

  signal(name) {
    this.child.kill(name);
  }

  /** kill -9: the daemon loses its memory at once. */
  async kill() {
    const child = this.child;
    if (child && child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL');
      await once(child, 'exit');
    }
  }

  async restart() {
    await this.kill();
    await this.start();
  }

  async stop() {
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    child.kill('SIGCONT');
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
    await once(child, 'exit');
    clearTimeout(timer);
  }

  /** POST one batch; with an incarnation, positions start at `firstPosition`. */
  async append(sessionId, payloads, { incarnation, firstPosition = 1, revision = 1 } = {}) {
    const events = payloads.map((payload, i) => {
      const event = { revision, payload };
      if (incarnation) event.position = firstPosition + i;
      return event;
    });
    const body = incarnation ? { incarnation, events } : { events };
    const response = await fetch(`${this.httpUrl}/v1/sessions/${encodeURIComponent(sessionId)}/events`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(body),
    });
    const text = await response.text();
    if (!response.ok) throw new Error(`append failed: ${response.status} ${text}`);
    return JSON.parse(text);
  }
}
