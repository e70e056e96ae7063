// The JavaScript reader's rules against the vectors the Python reader passes too
// (tests/vectors/README.md). No daemon, no socket: ReaderState alone.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';

import { ReaderProtocolError, ReaderState, decodeFrame } from '../src/index.js';

const { vectors } = JSON.parse(
  readFileSync(new URL('../../../tests/vectors/reader.json', import.meta.url), 'utf8'),
);

/** The vector's JSON for what the state delivers: events one by one, by cursor. */
function asJson(items) {
  return items.flatMap((item) => {
    if (item.type === 'events') return item.events.map((event) => ({ event: event.cursor }));
    if (item.type === 'gap') return [{ gap: item.gap }];
    return [{ caught_up: item.cursor }];
  });
}

/** One step; a 44xx close's failure is thrown, as the Python machine raises it. */
function run(state, step) {
  if ('connect' in step) {
    state.connected();
    return [];
  }
  if ('close' in step) {
    const failure = state.closed(step.close);
    if (failure) throw Object.assign(new Error(failure.message), { failure });
    return [];
  }
  // The frame as the daemon sends it: JSON text.
  return state.receive(decodeFrame(JSON.stringify(step.frame)));
}

function checkRaised(err, expected) {
  if (expected.kind === 'protocol') {
    assert.ok(err instanceof ReaderProtocolError, `not a protocol error: ${err}`);
  } else {
    assert.equal(expected.kind, 'refused');
    assert.deepEqual([err.failure?.closeCode, err.failure?.code], [expected.close_code, expected.code]);
  }
  return true;
}

test('there are vectors, with unique names', () => {
  const names = vectors.map((v) => v.name);
  assert.ok(names.length >= 12);
  assert.equal(new Set(names).size, names.length);
});

for (const vector of vectors) {
  test(`vector ${vector.name}`, () => {
    const state = new ReaderState(vector.start);
    assert.equal(state.cursor, vector.start);
    vector.steps.forEach((step, number) => {
      const { expect } = step;
      if (expect.raises) {
        assert.throws(() => run(state, step), (err) => checkRaised(err, expect.raises));
        assert.equal(number, vector.steps.length - 1, 'a raise ends the vector');
        return;
      }
      const items = run(state, step);
      assert.deepEqual(asJson(items), expect.items, `step ${number}`);
      assert.equal(state.cursor, expect.cursor, `step ${number}`);
    });
    const { events, gaps, duplicatesDropped } = state.stats;
    assert.deepEqual({ events, gaps, duplicates_dropped: duplicatesDropped }, vector.stats);
  });
}

test('a message that is not a JSON object is a protocol error', () => {
  for (const data of ['not json', 'null', '5', '[]']) {
    assert.throws(() => decodeFrame(data), ReaderProtocolError);
  }
});
