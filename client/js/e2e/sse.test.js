// A plain `EventSource` in a real headless Chromium (Debian's, never a downloaded build)
// reading the daemon's SSE stream (PROTOCOL.md section 8): the backlog, `caught_up`
// and live events; a kill -9 and restart of the daemon, after which the browser
// resumes on its own with `Last-Event-ID` (its URL still says `cursor=earliest`) with
// no duplicate and no hole; and a `gap` as a named event. No client library: what any
// page can do. Run with `npm run test:e2e` (scripts/test-e2e.sh installs what it needs).
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';

import { chromium } from 'playwright-core';

import { Daemon } from '../test/daemon.js';

const CHROMIUM = process.env.LIVEREPLAY_CHROMIUM ?? '/usr/bin/chromium';
const SESSION = 'e2e:sse-1';
const INC = 'sse-writer';
const TIMEOUT = 30_000;

// What the page runs: an EventSource, every message it gets recorded in order.
function openEventSource(url) {
  window.received = [];
  const source = new EventSource(url);
  const record = (kind) => (e) => window.received.push({ kind, id: e.lastEventId, data: JSON.parse(e.data) });
  source.onmessage = record('event');
  for (const kind of ['hello', 'caught_up', 'gap', 'heartbeat']) source.addEventListener(kind, record(kind));
  source.onerror = () => window.received.push({ kind: 'error', readyState: source.readyState });
  window.source = source;
}

const payloads = (from, to) => Array.from({ length: to - from + 1 }, (_, i) => ({ n: from + i }));

test('a plain EventSource reads, rides out a daemon restart with Last-Event-ID, and gets gaps', async () => {
  const daemon = new Daemon(['--startup-grace-s', '10']);
  await daemon.start();
  const profile = mkdtempSync(join(tmpdir(), 'livereplay-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking'],
  });
  try {
    const page = context.pages()[0] ?? (await context.newPage());
    page.setDefaultTimeout(TIMEOUT);
    const streamRequests = [];
    page.on('request', (request) => {
      if (request.url().includes('/stream')) streamRequests.push(request);
    });
    const received = () => page.evaluate(() => window.received);
    const waitFor = (predicate, arg) => page.waitForFunction(predicate, arg, { timeout: TIMEOUT, polling: 50 });
    const events = async () => (await received()).filter((m) => m.kind === 'event');

    const first = await daemon.append(SESSION, payloads(1, 3), { incarnation: INC });
    await page.goto(`${daemon.httpUrl}/healthz`); // the daemon's origin: no CORS needed
    await page.evaluate(openEventSource, `/v1/sessions/${encodeURIComponent(SESSION)}/stream?cursor=earliest`);

    // The backlog as unnamed messages (onmessage), each with its cursor as id, then caught_up.
    await waitFor(() => window.received.some((m) => m.kind === 'caught_up'));
    let seen = await received();
    assert.deepEqual(seen.map((m) => m.kind), ['hello', 'event', 'event', 'event', 'caught_up']);
    assert.deepEqual(seen.slice(1, 4).map((m) => m.id), first.cursors);
    assert.deepEqual(seen.slice(1, 4).map((m) => m.data.payload), payloads(1, 3));
    assert.equal(seen[4].id, first.tail_cursor, 'caught_up sets the id to its cursor');

    // Live.
    const live = await daemon.append(SESSION, payloads(4, 4), { incarnation: INC, firstPosition: 4 });
    await waitFor(() => window.received.some((m) => m.kind === 'event' && m.data.position === 4));
    assert.equal((await events()).at(-1).id, live.cursors[0]);

    // kill -9: the browser notices and keeps trying on its own.
    await daemon.kill();
    await waitFor(() => window.received.some((m) => m.kind === 'error'));
    await daemon.start();
    // The writer re-sends its window to the restarted daemon, with two new events; the
    // browser, back with Last-Event-ID, gets exactly what it had not seen.
    const restored = await daemon.append(SESSION, payloads(1, 6), { incarnation: INC });
    await waitFor(() => window.received.some((m) => m.kind === 'event' && m.data.position === 6));
    seen = await received();
    const positions = seen.filter((m) => m.kind === 'event').map((m) => m.data.position);
    assert.deepEqual(positions, [1, 2, 3, 4, 5, 6], 'each event exactly once, in order');
    const hellos = seen.filter((m) => m.kind === 'hello');
    assert.equal(hellos.length, 2, 'one reconnect that reached the daemon');
    assert.equal(hellos[1].data.cursor, live.cursors[0], 'resumed where it left off');
    assert.equal(seen.filter((m) => m.kind === 'gap').length, 0, 'no gap: the window was restored');
    assert.equal(seen.at(-1).id, restored.cursors[5]);
    const resumed = streamRequests.at(-1);
    assert.ok(resumed.url().endsWith('cursor=earliest'), 'the URL never changed');
    assert.equal((await resumed.allHeaders())['last-event-id'], live.cursors[0]);

    // A new writer takes the session over: a named `gap` event, its id the resume point.
    const taken = await daemon.append(SESSION, [{ run: 2 }], { incarnation: `${INC}-2` });
    await waitFor(() => window.received.some((m) => m.kind === 'gap'));
    const gap = (await received()).find((m) => m.kind === 'gap');
    assert.equal(gap.data.type, 'gap');
    assert.equal(gap.data.reason, 'unavailable');
    assert.equal(gap.data.detail, 'incarnation_changed');
    assert.equal(gap.data.latest_cursor, taken.tail_cursor);
    assert.equal(gap.id, taken.tail_cursor);
    // It goes on strictly after the gap's latest cursor.
    const after = await daemon.append(SESSION, [{ run: 2, n: 2 }], { incarnation: `${INC}-2`, firstPosition: 2 });
    await waitFor((cursor) => window.received.some((m) => m.kind === 'event' && m.id === cursor), after.cursors[0]);
    const newRun = (await events()).filter((m) => m.data.replay_incarnation_id === `${INC}-2`);
    assert.deepEqual(newRun.map((m) => m.data.position), [2]);
    assert.notEqual(await page.evaluate(() => window.source.readyState), 2, 'never closed for good');
  } finally {
    await context.close();
    rmSync(profile, { recursive: true, force: true });
    await daemon.stop();
  }
});
