// subscribe() over a scripted WebSocket: the shell feeds ReaderState and reconnects
// from its cursor. No daemon, no network.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { subscribe } from '../src/index.js';
import { waitFor } from './daemon.js';

const S = 's-1';
const cursor = (position) => `lashsc2:w1:1:${position}:${S}`;
const hello = (at) => ({ type: 'hello', protocol: 1, session_id: S, cursor: cursor(at), head: cursor(at), heartbeat_s: 15 });
const event = (position) => ({
  session_id: S, replay_incarnation_id: 'w1', turn_id: null, revision: 1,
  position, cursor: cursor(position), ts: 1, payload: { n: position },
});
const events = (...positions) => ({ type: 'events', events: positions.map(event) });

/** A WebSocket class whose nth connection sends script[n].frames, then closes with its code. */
function scripted(script) {
  const urls = [];
  class Scripted {
    constructor(url) {
      urls.push(url);
      const { frames, close } = script[urls.length - 1];
      setTimeout(() => {
        for (const frame of frames) this.onmessage?.({ data: JSON.stringify(frame) });
        if (close) this.onclose?.({ code: close, reason: '' });
      }, 1);
    }

    close() {}
  }
  return { Scripted, urls };
}

test('a reconnect resumes from the state cursor; duplicates are dropped', async () => {
  const { Scripted, urls } = scripted([
    { frames: [hello(0), events(1, 2)], close: 1006 },
    { frames: [hello(2), events(2, 3), { type: 'caught_up', cursor: cursor(3) }] },
  ]);
  const positions = [];
  const statuses = [];
  const sub = subscribe({
    url: 'http://daemon', sessionId: S, WebSocket: Scripted, backoffBaseMs: 1, backoffCapMs: 2,
    onEvents: (batch) => positions.push(...batch.map((e) => e.position)),
    onStatus: (status) => statuses.push(status),
  });
  try {
    await waitFor(() => sub.status === 'caught_up', 'caught_up');
    assert.deepEqual(positions, [1, 2, 3]);
    assert.deepEqual(urls.map((u) => new URL(u).searchParams.get('cursor')), ['earliest', cursor(2)]);
    assert.equal(sub.cursor, cursor(3));
    const { connects, reconnects, duplicatesDropped, events: count } = sub.stats;
    assert.deepEqual([connects, reconnects, duplicatesDropped, count], [2, 1, 1, 3]);
    assert.deepEqual(statuses, ['connecting', 'connected', 'reconnecting', 'connected', 'caught_up']);
  } finally {
    sub.close();
  }
});

test('events before hello end the reader with a protocol_error', async () => {
  const { Scripted, urls } = scripted([{ frames: [events(1)] }]);
  const errors = [];
  const sub = subscribe({
    url: 'http://daemon', sessionId: S, WebSocket: Scripted, onError: (error) => errors.push(error),
  });
  await waitFor(() => errors.length === 1, 'the failure');
  assert.equal(errors[0].code, 'protocol_error');
  assert.equal(sub.status, 'failed');
  assert.equal(urls.length, 1);
});
