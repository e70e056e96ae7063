// The JavaScript reader against a real daemon: live reading, gaps, refusals,
// a daemon restart, a daemon not there yet, a stalled daemon, and sockets that
// fail with only an `error` event. Run with `npm test`.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { after, before, describe, test } from 'node:test';

import { backoffDelay, cursorPoint, streamUrl, subscribe } from '../src/index.js';
import { Daemon, PYTHON, freePort, sleep, waitFor } from './daemon.js';

const INC = 'writer-1';
const FAST = { backoffBaseMs: 50, backoffCapMs: 300, connectTimeoutMs: 2000 };

/** Subscribe and record what a host would act on, in arrival order. */
function record(options) {
  const seen = { events: [], gaps: [], caughtUp: [], statuses: [], errors: [], order: [], hellos: [], heads: [] };
  seen.positions = () => seen.events.map((e) => e.position);
  seen.sub = subscribe({
    ...FAST,
    ...options,
    onEvents: (events) => {
      seen.events.push(...events);
      for (const e of events) seen.order.push(`event ${e.position}`);
    },
    onGap: (gap) => {
      seen.gaps.push(gap);
      seen.order.push(`gap ${gap.detail}`);
    },
    onCaughtUp: (cursor) => seen.caughtUp.push(cursor),
    onHello: (hello) => seen.hellos.push(hello),
    onHeartbeat: (head) => seen.heads.push(head),
    onStatus: (status, reason) => seen.statuses.push([status, reason]),
    onError: (error) => seen.errors.push(error),
  });
  return seen;
}

describe('pure helpers', () => {
  test('backoff is full jitter under a capped exponential ceiling', () => {
    const top = () => 0.999999;
    const ceilings = [0, 1, 2, 3, 4, 5, 10, 100].map((n) => Math.round(backoffDelay(n, 100, 1000, top)));
    assert.deepEqual(ceilings, [100, 200, 400, 800, 1000, 1000, 1000, 1000]);
    assert.equal(backoffDelay(7, 100, 1000, () => 0), 0);
    for (let i = 0; i < 200; i++) {
      const delay = backoffDelay(i % 12, 100, 1000);
      assert.ok(delay >= 0 && delay < 1000);
    }
  });

  test('stream URLs quote the session and the cursor', () => {
    assert.equal(
      streamUrl('http://127.0.0.1:7447/', 'a+b', 'lashsc2:i:1:+2:a+b'),
      'ws://127.0.0.1:7447/v1/sessions/a%2Bb/stream?cursor=lashsc2%3Ai%3A1%3A%2B2%3Aa%2Bb',
    );
    assert.match(streamUrl('https://h', 's', 'earliest'), /^wss:\/\/h\/v1\/sessions\/s\/stream/);
  });

  test('cursor positions beyond 2^53 compare exactly', () => {
    const [incarnation, position] = cursorPoint('lashsc2:i:1:18446744073709551615:s:with:colons');
    assert.equal(incarnation, 'i');
    assert.equal(position, 18446744073709551615n);
    assert.equal(cursorPoint('lashsc1:i:1:2:s'), null);
  });
});

describe('against a running daemon', () => {
  const daemon = new Daemon(['--startup-grace-s', '0', '--max-events-per-session', '3']);
  before(() => daemon.start());
  after(() => daemon.stop());

  test('backlog, caught_up, then live events, each once', async () => {
    await daemon.append('live', [{ n: 1 }, { n: 2 }], { incarnation: INC });
    const seen = record({ url: daemon.httpUrl, sessionId: 'live' });
    try {
      await waitFor(() => seen.caughtUp.length === 1, 'caught_up');
      assert.deepEqual(seen.positions(), [1, 2]);
      assert.deepEqual(seen.events.map((e) => e.payload), [{ n: 1 }, { n: 2 }]);
      assert.equal(seen.caughtUp[0], `lashsc2:${INC}:1:2:live`);
      assert.equal(seen.sub.status, 'caught_up');
      const result = await daemon.append('live', [{ n: 3 }], { incarnation: INC, firstPosition: 3 });
      await waitFor(() => seen.events.length === 3, 'the live event');
      assert.equal(seen.sub.cursor, result.cursors[0]);
      assert.deepEqual(seen.statuses.map(([s]) => s), ['connecting', 'connected', 'caught_up']);
    } finally {
      seen.sub.close();
    }
  });

  test('a reader of a session that does not exist yet waits for it', async () => {
    const seen = record({ url: daemon.httpUrl, sessionId: 'not-yet', cursor: 'latest' });
    try {
      await waitFor(() => seen.caughtUp.length === 1, 'caught_up');
      assert.equal(seen.caughtUp[0], null);
      await daemon.append('not-yet', ['hello']);
      await waitFor(() => seen.events.length === 1, 'the first event');
      assert.equal(seen.events[0].payload, 'hello');
    } finally {
      seen.sub.close();
    }
  });

  test('gaps are delivered, and reading resumes after them', async () => {
    // Retention keeps 3 events: starting at position 1 of 6 finds 2 and 3 trimmed.
    const first = await daemon.append('gappy', [1, 2, 3], { incarnation: INC });
    const second = await daemon.append('gappy', [4, 5, 6], { incarnation: INC, firstPosition: 4 });
    const seen = record({ url: daemon.httpUrl, sessionId: 'gappy', cursor: first.cursors[0] });
    try {
      await waitFor(() => seen.caughtUp.length === 1, 'caught_up');
      assert.equal(seen.gaps.length, 1);
      const gap = seen.gaps[0];
      assert.equal(gap.reason, 'trimmed');
      assert.equal(gap.detail, 'retention');
      assert.equal(gap.requested_cursor, first.cursors[0]);
      assert.equal(gap.latest_cursor, second.tail_cursor);
      assert.equal(gap.earliest_cursor, second.cursors[0]);
      assert.equal(seen.events.length, 0, 'events before the resume point are not sent');

      const taken = await daemon.append('gappy', ['x'], { incarnation: 'writer-2' });
      await waitFor(() => seen.gaps.length === 2, 'the incarnation gap');
      assert.equal(seen.gaps[1].detail, 'incarnation_changed');
      assert.equal(seen.sub.cursor, taken.tail_cursor);
      await daemon.append('gappy', ['y'], { incarnation: 'writer-2', firstPosition: 2 });
      await waitFor(() => seen.events.length === 1, 'the event after the gap');
      assert.equal(seen.events[0].payload, 'y');
      assert.deepEqual(seen.order, ['gap retention', 'gap incarnation_changed', 'event 2']);
    } finally {
      seen.sub.close();
    }
  });

  test('a 44xx close is final: status failed, no reconnect', async () => {
    for (const [cursor, code] of [
      ['lashsc1:a:1:1:s-1', 'malformed_cursor'],
      ['lashsc2:a:1:1:other', 'wrong_session'],
    ]) {
      const seen = record({ url: daemon.httpUrl, sessionId: 's-1', cursor });
      await waitFor(() => seen.errors.length === 1, 'the refusal');
      assert.equal(seen.errors[0].closeCode, 4400);
      assert.equal(seen.errors[0].code, code);
      assert.equal(seen.sub.status, 'failed');
      await sleep(500);
      assert.ok(!seen.statuses.some(([s]) => s === 'reconnecting'));
      // The daemon saw this reader once: it did not come back.
      const metrics = await (await fetch(`${daemon.httpUrl}/metrics`)).text();
      assert.match(metrics, new RegExp(`^livereplay_connections_refused_total\\{code="${code}"\\} 1\\.0$`, 'm'));
    }
  });
});

test('a daemon restart: reconnecting, then resume with no duplicate and no gap', async () => {
  const daemon = new Daemon(['--startup-grace-s', '10']);
  await daemon.start();
  let seen;
  try {
    const window = [1, 2, 3, 4, 5, 6].map((n) => ({ n }));
    await daemon.append('s-1', window.slice(0, 3), { incarnation: INC });
    // An injected WebSocket implementation: it records where each connection starts.
    const opened = [];
    class Recording extends WebSocket {
      constructor(url, protocols) {
        super(url, protocols);
        opened.push({ cursor: new URL(url).searchParams.get('cursor'), protocols });
      }
    }
    seen = record({ url: daemon.httpUrl, sessionId: 's-1', WebSocket: Recording, token: 'tok' });
    await waitFor(() => seen.caughtUp.length === 1, 'caught_up');
    const lastDelivered = seen.events.at(-1).cursor;
    await daemon.kill();
    await waitFor(() => seen.sub.status === 'reconnecting', 'reconnecting');
    await daemon.start();
    // The writer re-sends its window, with three new events.
    await daemon.append('s-1', window, { incarnation: INC });
    await waitFor(() => seen.events.length >= 6, 'the resent window');
    await sleep(300);
    assert.deepEqual(seen.positions(), [1, 2, 3, 4, 5, 6]);
    assert.deepEqual(seen.events.map((e) => e.payload), window);
    assert.equal(seen.gaps.length, 0);
    assert.ok(seen.sub.stats.reconnects >= 1);
    await waitFor(() => seen.sub.status === 'caught_up', 'caught up again');
    assert.equal(opened[0].cursor, 'earliest');
    assert.ok(opened.length >= 2);
    assert.ok(opened.slice(1).every((o) => o.cursor === lastDelivered), 'resumed from the last event');
    assert.deepEqual(opened[0].protocols, ['livereplay.v1.json', 'livereplay.token.tok']);
  } finally {
    seen?.sub.close();
    await daemon.stop();
  }
});

test('a stalled daemon (SIGSTOP) is noticed by the heartbeat watchdog', async () => {
  const daemon = new Daemon(['--startup-grace-s', '0', '--heartbeat-s', '0.5']);
  await daemon.start();
  let seen;
  try {
    await daemon.append('s-1', [1, 2], { incarnation: INC });
    seen = record({ url: daemon.httpUrl, sessionId: 's-1', connectTimeoutMs: 1000 });
    await waitFor(() => seen.caughtUp.length === 1, 'caught_up');
    await sleep(1500); // heartbeats keep an idle connection up
    assert.equal(seen.sub.stats.heartbeatTimeouts, 0);
    assert.equal(seen.sub.status, 'caught_up');
    // The hello and each heartbeat tell the host the session's tail.
    assert.deepEqual(seen.hellos, [{ cursor: `lashsc2:${INC}:1:0:s-1`, head: `lashsc2:${INC}:1:2:s-1`, heartbeat_s: 0.5 }]);
    assert.ok(seen.heads.length >= 1, 'heartbeats were delivered');
    assert.ok(seen.heads.every((head) => head === `lashsc2:${INC}:1:2:s-1`));

    daemon.signal('SIGSTOP');
    const stopped = Date.now();
    try {
      await waitFor(() => seen.sub.status === 'reconnecting', 'reconnecting', 10_000);
    } finally {
      daemon.signal('SIGCONT');
    }
    assert.ok(Date.now() - stopped < 5000, 'noticed within a few heartbeats');
    assert.ok(seen.sub.stats.heartbeatTimeouts >= 1);
    assert.ok(seen.statuses.some(([s, r]) => s === 'reconnecting' && /heartbeat/.test(r)));

    await daemon.append('s-1', [3], { incarnation: INC, firstPosition: 3 });
    await waitFor(() => seen.events.length === 3, 'the event after the stall');
    await waitFor(() => seen.sub.status === 'caught_up', 'caught up again');
    assert.deepEqual(seen.positions(), [1, 2, 3]);
    assert.equal(seen.gaps.length, 0);
  } finally {
    seen?.sub.close();
    await daemon.stop();
  }
});

test('a reader token goes as a subprotocol; without one the refusal is final', async () => {
  const key = 'k'.repeat(32);
  const daemon = new Daemon(['--startup-grace-s', '0', '--reader-key', key]);
  await daemon.start();
  const subs = [];
  try {
    await daemon.append('private', ['secret']);
    const anonymous = record({ url: daemon.httpUrl, sessionId: 'private' });
    subs.push(anonymous.sub);
    await waitFor(() => anonymous.errors.length === 1, 'the refusal');
    assert.equal(anonymous.errors[0].closeCode, 4401);
    assert.equal(anonymous.sub.status, 'failed');

    const token = execFileSync(PYTHON, [
      '-c',
      'import sys; from livereplay.protocol.tokens import mint_reader_token as m; print(m(sys.argv[1], session_id="private"))',
      key,
    ]).toString().trim();
    const reader = record({ url: daemon.httpUrl, sessionId: 'private', token });
    subs.push(reader.sub);
    await waitFor(() => reader.events.length === 1, 'the event');
    assert.equal(reader.events[0].payload, 'secret');
  } finally {
    for (const sub of subs) sub.close();
    await daemon.stop();
  }
});

/**
 * A WebSocket whose every connection attempt fails, as Node's does: an `error`
 * event, then a `close` only when `thenClose` is set. It counts attempts and
 * notes any attempt started while another one is still pending.
 */
function failingSocket({ thenClose }) {
  const log = { attempts: 0, pending: 0, overlapped: 0 };
  class Failing {
    constructor(url, protocols) {
      this.url = url;
      this.protocol = '';
      this.readyState = 0;
      this.onopen = this.onmessage = this.onerror = this.onclose = null;
      log.attempts++;
      if (log.pending++ > 0) log.overlapped++;
      setTimeout(() => {
        log.pending--;
        this.onerror?.({ type: 'error', message: 'Received network error or non-101 status code.' });
        if (thenClose) {
          this.readyState = 3;
          this.onclose?.({ type: 'close', code: 1006, reason: '', wasClean: false });
        }
      }, 5);
    }

    close() {
      this.readyState = 3;
    }
  }
  return { Failing, log };
}

describe('a connection attempt that fails with an error event', () => {
  for (const thenClose of [false, true]) {
    test(`is retried with backoff, once per attempt (${thenClose ? 'error, then close' : 'error only, as Node 20'})`, async () => {
      const { Failing, log } = failingSocket({ thenClose });
      const seen = record({
        url: 'http://127.0.0.1:9',
        sessionId: 's-1',
        WebSocket: Failing,
        // A fixed 20 ms backoff and a connect timeout far beyond the test: only
        // the error event can make the reader try again.
        backoffBaseMs: 40,
        backoffCapMs: 40,
        random: () => 0.5,
        connectTimeoutMs: 60_000,
      });
      try {
        await waitFor(() => log.attempts >= 6, 'six attempts', 5000);
        seen.sub.close();
        await sleep(100);
        const lost = seen.statuses.filter(([s]) => s === 'reconnecting');
        // Each failed attempt scheduled exactly one reconnect: attempts and losses
        // go one for one (the last attempt may have been cut short by close()).
        assert.ok(lost.length === log.attempts || lost.length === log.attempts - 1,
          `${log.attempts} attempts, ${lost.length} losses`);
        assert.equal(log.overlapped, 0, 'never two attempts at once');
        assert.match(lost[0][1], /^connection error: Received network error/);
        assert.equal(seen.sub.status, 'closed');
        const attempts = log.attempts;
        await sleep(200);
        assert.equal(log.attempts, attempts, 'nothing after close()');
        assert.deepEqual(seen.errors, []);
      } finally {
        seen.sub.close();
      }
    });
  }
});

test('nothing listening yet, then a daemon appears: connected within the backoff, not the connect timeout', async () => {
  // Node's WebSocket reports a refused connection with an `error` event and no
  // `close`: a reader that waited for the close would sit out connectTimeoutMs.
  const port = await freePort();
  const seen = record({
    url: `http://127.0.0.1:${port}`,
    sessionId: 's-1',
    backoffBaseMs: 50,
    backoffCapMs: 200,
    connectTimeoutMs: 30_000,
  });
  const daemon = new Daemon(['--startup-grace-s', '0'], port);
  try {
    await waitFor(() => seen.sub.status === 'reconnecting', 'reconnecting', 5000);
    await sleep(500);
    assert.ok(seen.statuses.filter(([s]) => s === 'reconnecting').length >= 2, 'it keeps trying');
    await daemon.start();
    await daemon.append('s-1', ['hello'], { incarnation: INC });
    // Within a few backoff periods of the daemon, far under the 30 s connect timeout.
    await waitFor(() => seen.events.length === 1, 'the event', 10_000);
    assert.equal(seen.events[0].payload, 'hello');
    assert.equal(seen.sub.stats.connects, 1);
    assert.deepEqual(seen.errors, []);
  } finally {
    seen.sub.close();
    await daemon.stop();
  }
});

test('a daemon restart with a long connect timeout: back within the backoff', async () => {
  const daemon = new Daemon(['--startup-grace-s', '10']);
  await daemon.start();
  let seen;
  try {
    await daemon.append('s-1', [1, 2], { incarnation: INC });
    seen = record({ url: daemon.httpUrl, sessionId: 's-1', connectTimeoutMs: 30_000 });
    await waitFor(() => seen.caughtUp.length === 1, 'caught_up');
    await daemon.kill();
    await waitFor(() => seen.sub.status === 'reconnecting', 'reconnecting');
    await sleep(300); // refused attempts, each retried after its backoff
    await daemon.start();
    await daemon.append('s-1', [1, 2, 3], { incarnation: INC });
    await waitFor(() => seen.events.length === 3, 'the event after the restart', 10_000);
    assert.deepEqual(seen.positions(), [1, 2, 3]);
    assert.equal(seen.sub.stats.reconnects, 1);
    assert.equal(seen.gaps.length, 0);
  } finally {
    seen?.sub.close();
    await daemon.stop();
  }
});
