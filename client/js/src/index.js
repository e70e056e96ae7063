// livereplay reader for browsers and Node (PROTOCOL.md sections 4 and 7).
//
// subscribe() keeps one WebSocket to the daemon's stream of a session and calls
// back with what it says: events, gaps, caught_up. When the connection is lost
// (a close with 1001, 1006, 1011, 1012 or 1013, an `error` event (a failed connect,
// which Node's WebSocket reports with no `close`), or heartbeats that
// stop coming from a daemon the browser does not report as gone) it reconnects
// with full-jitter exponential backoff and resumes after the last event it
// delivered, or after the last gap's latest_cursor. The daemon never repeats an
// event within one connection; dropping events at or below the last delivered
// position of the same incarnation keeps that true across connections. A close
// with 44xx is final: status "failed" and onError.
//
// The resume rules are `ReaderState`, with no I/O and no clock: the same rules as
// the Python reader's ReaderMachine, and both pass tests/vectors/reader.json.
// subscribe() is its I/O shell: sockets, timers, backoff and callbacks.
//
// No dependencies: the WebSocket is the browser's, Node's global one, or any
// implementation of the same interface passed as `WebSocket`.

export const JSON_SUBPROTOCOL = 'livereplay.v1.json';
// Browsers cannot send headers on a WebSocket: a token goes as a subprotocol.
export const TOKEN_SUBPROTOCOL_PREFIX = 'livereplay.token.';

const CURSOR_PREFIX = 'lashsc2:';

/** Full jitter: a delay drawn from [0, min(cap, base * 2^attempt)). */
export function backoffDelay(attempt, baseMs, capMs, random = Math.random) {
  const ceiling = Math.min(capMs, baseMs * 2 ** Math.min(attempt, 60));
  return random() * ceiling;
}

/** The stream endpoint under a daemon's base URL (http(s):// or ws(s)://). */
export function streamUrl(url, sessionId, cursor) {
  const base = new URL(url);
  if (base.protocol === 'http:') base.protocol = 'ws:';
  else if (base.protocol === 'https:') base.protocol = 'wss:';
  const path = base.pathname.replace(/\/+$/, '');
  base.pathname = `${path}/v1/sessions/${encodeURIComponent(sessionId)}/stream`;
  base.search = `?cursor=${encodeURIComponent(cursor)}`;
  base.hash = '';
  return base.toString();
}

/** [incarnation, position as BigInt] of a cursor, or null if it is not one. */
export function cursorPoint(cursor) {
  if (typeof cursor !== 'string' || !cursor.startsWith(CURSOR_PREFIX)) return null;
  const parts = cursor.slice(CURSOR_PREFIX.length).split(':');
  if (parts.length < 4 || !/^\+?[0-9]+$/.test(parts[2])) return null;
  return [parts[0], BigInt(parts[2].replace('+', ''))];
}

/** The daemon sent something protocol 1 does not have where it came. */
export class ReaderProtocolError extends Error {
  constructor(message) {
    super(message);
    this.name = 'ReaderProtocolError';
  }
}

/** A WebSocket message as a frame: a JSON object, or a ReaderProtocolError. */
export function decodeFrame(data) {
  let frame;
  try {
    frame = JSON.parse(data);
  } catch {
    throw new ReaderProtocolError('a frame that is not JSON');
  }
  if (frame === null || typeof frame !== 'object' || Array.isArray(frame)) {
    throw new ReaderProtocolError('a frame that is not a JSON object');
  }
  return frame;
}

/**
 * One reader's progress through the daemon's frames, across its connections.
 *
 * `cursor` is where the next connection must start: the start given, then the
 * hello's resolved cursor, each delivered event, each gap's latest_cursor (or
 * `earliest`), each caught_up cursor. `receive(frame)` answers with the items to
 * deliver: `{type: 'events', events}`, `{type: 'gap', gap}`, `{type: 'caught_up', cursor}`.
 */
export class ReaderState {
  #error = null; // this connection's error frame: its 44xx close follows
  #last = null; // [incarnation, position] delivered last (or a gap's resume point)

  constructor(start, stats = { duplicatesDropped: 0, events: 0, gaps: 0 }) {
    this.cursor = start;
    this.stats = stats; // counts events, gaps and duplicatesDropped
    this.hello = null; // this connection's hello, once it came
  }

  /** A new connection opened at `cursor`: its first frame must be hello. */
  connected() {
    this.hello = null;
    this.#error = null;
  }

  /** The connection closed: a 44xx is final (the failure is returned), anything else resumes. */
  closed(code, reason = '') {
    const error = this.#error;
    this.#error = null;
    this.hello = null;
    if (!(code >= 4400 && code < 4500)) return null;
    return {
      closeCode: code,
      code: error?.code ?? null,
      message: error?.message ?? (reason || `closed ${code}`),
    };
  }

  receive(frame) {
    if (this.hello === null) return this.#first(frame);
    switch (frame.type) {
      case 'events':
        return this.#events(frame.events);
      case 'gap': {
        // Resume strictly after the gap: the host reloads its state from its own source.
        const gap = { ...frame };
        delete gap.type;
        this.#last = cursorPoint(gap.latest_cursor);
        this.cursor = gap.latest_cursor ?? 'earliest';
        this.stats.gaps++;
        return [{ type: 'gap', gap }];
      }
      case 'caught_up':
        if (frame.cursor) this.cursor = frame.cursor;
        // A session that does not exist yet: all it gets is new, so never skip it on a reconnect.
        else if (this.cursor === 'latest') this.cursor = 'earliest';
        return [{ type: 'caught_up', cursor: frame.cursor ?? null }];
      case 'error':
        this.#error = frame; // the 44xx close follows
        return [];
      case 'hello':
        throw new ReaderProtocolError('a second hello on one connection');
      default:
        return []; // heartbeat: its arrival fed the shell's watchdog
    }
  }

  /** A connection opens with hello, or with an error that its 44xx close follows. */
  #first(frame) {
    if (this.#error === null && frame.type === 'hello') {
      this.hello = frame;
      if (frame.cursor) this.cursor = frame.cursor; // a word resolved to where reading starts
      return [];
    }
    if (this.#error === null && frame.type === 'error') {
      this.#error = frame;
      return [];
    }
    throw new ReaderProtocolError(`the first frame was not hello: ${(this.#error ?? frame).type}`);
  }

  #events(events) {
    const fresh = [];
    let last = this.#last;
    for (const event of events) {
      const point = cursorPoint(event.cursor);
      if (point && last && point[0] === last[0] && point[1] <= last[1]) {
        this.stats.duplicatesDropped++;
        continue;
      }
      if (point) last = point;
      this.cursor = event.cursor;
      fresh.push(event);
    }
    this.#last = last;
    this.stats.events += fresh.length;
    return fresh.length ? [{ type: 'events', events: fresh }] : [];
  }
}

const noop = () => {};

export function subscribe(options) {
  const {
    url = globalThis.location ? new URL('/', globalThis.location.href).toString() : undefined,
    sessionId,
    cursor = 'earliest',
    token,
    onEvents = noop,
    onGap = noop,
    onCaughtUp = noop,
    onHello = noop,
    onHeartbeat = noop,
    onStatus = noop,
    onError = noop,
    WebSocket: Socket = globalThis.WebSocket,
    backoffBaseMs = 100,
    backoffCapMs = 10_000,
    healthyMs = 10_000,
    connectTimeoutMs = 10_000,
    heartbeatTolerance = 2,
    random = Math.random,
  } = options ?? {};
  if (!url) throw new TypeError('subscribe: `url` is required outside a browser page');
  if (typeof sessionId !== 'string' || !sessionId) {
    throw new TypeError('subscribe: `sessionId` is required');
  }
  if (typeof Socket !== 'function') {
    throw new TypeError('subscribe: no WebSocket implementation (pass `WebSocket`)');
  }
  if (!(backoffBaseMs > 0 && backoffCapMs >= backoffBaseMs)) {
    throw new RangeError('subscribe: backoff needs 0 < backoffBaseMs <= backoffCapMs');
  }
  const protocols = [JSON_SUBPROTOCOL];
  if (token) protocols.push(TOKEN_SUBPROTOCOL_PREFIX + token);

  let status = 'connecting';
  let socket = null;
  let timer = null; // connect timeout, heartbeat watchdog, or backoff wait
  let attempt = 0;
  let upSince = null;
  let silenceMs = connectTimeoutMs;
  let ended = false;
  // One object: the state counts events, gaps and duplicates, this shell connections.
  const stats = {
    connects: 0,
    reconnects: 0,
    heartbeatTimeouts: 0,
    duplicatesDropped: 0,
    events: 0,
    gaps: 0,
  };
  const state = new ReaderState(cursor, stats);

  function setStatus(next, reason) {
    if (next === status && reason === undefined) return;
    status = next;
    onStatus(next, reason);
  }

  function silenceFor(heartbeatS) {
    silenceMs = Math.max(heartbeatS * heartbeatTolerance, heartbeatS + 1) * 1000;
    return silenceMs;
  }

  function arm(ms, fire) {
    clearTimeout(timer);
    timer = setTimeout(fire, ms);
  }

  function detach(ws, code) {
    ws.onopen = ws.onmessage = ws.onerror = ws.onclose = null;
    try {
      ws.close(code);
    } catch {
      // already closing or closed
    }
  }

  function connect() {
    timer = null;
    silenceMs = connectTimeoutMs;
    let ws;
    try {
      ws = new Socket(streamUrl(url, sessionId, state.cursor), protocols);
    } catch (err) {
      fail({ closeCode: null, code: 'bad_url', message: String(err) });
      return;
    }
    socket = ws;
    state.connected();
    arm(connectTimeoutMs, () => lost(ws, 'connect timeout', true));
    ws.onmessage = (message) => {
      if (socket !== ws) return;
      let frame;
      let items;
      try {
        frame = decodeFrame(message.data);
        items = state.receive(frame);
      } catch (err) {
        if (!(err instanceof ReaderProtocolError)) throw err;
        fail({ closeCode: null, code: 'protocol_error', message: err.message });
        return;
      }
      // Any frame proves the daemon alive; after hello, silence means it is not.
      arm(frame.type === 'hello' ? silenceFor(frame.heartbeat_s) : silenceMs, () => {
        stats.heartbeatTimeouts++;
        lost(ws, `no frame for ${silenceMs} ms (heartbeat timeout)`, true);
      });
      onFrame(frame, items);
    };
    // A failed attempt: browsers follow `error` with `close`, but Node's WebSocket
    // (undici; seen on Node 20) fires only `error` and leaves the socket CONNECTING,
    // which would hold the reader until the connect timeout. So an `error` counts as
    // the close: the socket is abandoned (its handlers detached, so a `close` that
    // does follow is never seen) and one reconnect is scheduled, with backoff.
    ws.onerror = (event) => {
      if (socket !== ws) return;
      const detail = event?.message || event?.error?.message;
      lost(ws, detail ? `connection error: ${detail}` : 'connection error', true);
    };
    ws.onclose = (event) => {
      if (socket !== ws) return;
      const failure = state.closed(event.code, event.reason);
      if (failure) fail(failure);
      else lost(ws, `closed ${event.code}`, false);
    };
  }

  /** The callbacks for one frame the state accepted, and its items. */
  function onFrame(frame, items) {
    if (frame.type === 'hello') {
      upSince = Date.now();
      if (stats.connects++ > 0) stats.reconnects++;
      setStatus('connected');
      onHello({ cursor: frame.cursor ?? null, head: frame.head ?? null, heartbeat_s: frame.heartbeat_s });
    } else if (frame.type === 'heartbeat') {
      onHeartbeat(frame.head ?? null); // its arrival also fed the watchdog
    }
    for (const item of items) {
      if (item.type === 'events') onEvents(item.events);
      else if (item.type === 'gap') onGap(item.gap);
      else {
        setStatus('caught_up');
        onCaughtUp(item.cursor);
      }
    }
  }

  function lost(ws, reason, abandon) {
    if (ended || socket !== ws) return;
    socket = null;
    clearTimeout(timer);
    if (abandon) detach(ws, 1000);
    else detach(ws);
    if (upSince !== null && Date.now() - upSince >= healthyMs) attempt = 0;
    upSince = null;
    setStatus('reconnecting', reason);
    arm(backoffDelay(attempt++, backoffBaseMs, backoffCapMs, random), connect);
  }

  function fail(error) {
    end('failed', error.message);
    onError(error);
  }

  function end(finalStatus, reason) {
    if (ended) return;
    ended = true;
    clearTimeout(timer);
    if (socket) detach(socket, 1000);
    socket = null;
    setStatus(finalStatus, reason);
  }

  onStatus('connecting');
  connect();
  return {
    close() {
      end('closed');
    },
    get cursor() {
      return state.cursor;
    },
    get status() {
      return status;
    },
    get stats() {
      return { ...stats };
    },
  };
}
