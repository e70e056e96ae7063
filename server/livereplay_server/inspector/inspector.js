// The inspector page: the daemon's sessions, and one session's events live,
// read with the JavaScript client (/static/livereplay.js). Everything from the
// daemon is shown as text, never as markup. The page keeps at most MAX_ROWS rows
// and says how many older ones it removed.
import { subscribe } from '/static/livereplay.js';

const MAX_ROWS = 2000;
const POLL_MS = 2000;
const MAX_SESSION_PAGES = 10; // 1000 sessions listed at most
const PAYLOAD_PREVIEW = 400;
const PAYLOAD_FULL = 100_000;

const $ = (id) => document.getElementById(id);
const TOKEN_KEY = 'livereplay.token';

let token = sessionStorage.getItem(TOKEN_KEY) ?? '';
let current = null; // { sessionId, sub, rows, dropped }
let pollTimer = null;

const GAP_TEXT = {
  retention: 'history was trimmed before it could be read',
  lagged: 'this reader fell behind and history was trimmed',
  writer_overflow: 'the writer dropped events: they never reached the daemon',
  incarnation_changed: 'a new writer took the session over',
  ahead_of_tail: 'the cursor is ahead of what the daemon has',
  unknown_session: 'the daemon does not know this session (restarted, or expired)',
  session_deleted: 'the session was deleted',
};

const STATUS_TEXT = {
  connecting: 'connecting',
  connected: 'connected · loading',
  caught_up: 'caught up · live',
  reconnecting: 'reconnecting',
  closed: 'closed',
  failed: 'failed',
};

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function authHeaders() {
  return token ? { Authorization: `Bearer ${token}` } : {};
}

function positionOf(cursor) {
  if (!cursor || !cursor.startsWith('lashsc2:')) return cursor ?? '–';
  return `#${cursor.slice(8).split(':')[2]}`;
}

function formatBytes(n) {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1024 / 1024).toFixed(1)} MiB`;
}

// -- the sessions list --------------------------------------------------------

async function fetchSessions() {
  const sessions = [];
  let after = null;
  for (let page = 0; page < MAX_SESSION_PAGES; page++) {
    const query = new URLSearchParams({ limit: '100' });
    if (after) query.set('after', after);
    const response = await fetch(`/v1/sessions?${query}`, { headers: authHeaders(), cache: 'no-store' });
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    const body = await response.json();
    sessions.push(...body.sessions);
    after = body.next_after;
    if (!after) return { sessions, more: false };
  }
  return { sessions, more: true };
}

function renderSessions(sessions, more) {
  const body = $('sessions').tBodies[0];
  const rows = sessions.map((s) => {
    const row = el('tr');
    row.dataset.sessionId = s.session_id;
    if (current && current.sessionId === s.session_id) row.classList.add('selected');
    const link = el('a', '', s.session_id);
    link.href = `#/s/${encodeURIComponent(s.session_id)}`;
    const name = el('td');
    name.append(link);
    const incarnation = el('td', 'incarnation mono', s.incarnation);
    incarnation.title = s.incarnation;
    const tail = el('td', 'num mono', positionOf(s.tail_cursor));
    tail.title = s.tail_cursor;
    row.append(
      name,
      incarnation,
      tail,
      el('td', 'num', String(s.retained_events)),
      el('td', 'num', formatBytes(s.retained_bytes)),
      el('td', 'num', String(s.readers)),
    );
    row.addEventListener('click', () => {
      location.hash = link.getAttribute('href');
    });
    return row;
  });
  body.replaceChildren(...rows);
  $('sessions-note').textContent = sessions.length
    ? more ? `Showing the first ${sessions.length} sessions.` : ''
    : 'No sessions yet.';
}

function setDaemon(state, text) {
  const node = $('daemon');
  node.dataset.state = state;
  node.textContent = text;
}

async function pollSessions() {
  clearTimeout(pollTimer);
  try {
    const { sessions, more } = await fetchSessions();
    renderSessions(sessions, more);
    setDaemon('ok', `daemon up · ${sessions.length}${more ? '+' : ''} sessions`);
    if (current) showRetained(sessions.find((s) => s.session_id === current.sessionId));
  } catch (err) {
    setDaemon('down', `daemon unreachable (${err.message})`);
  }
  pollTimer = setTimeout(pollSessions, POLL_MS);
}

function showRetained(info) {
  $('retained').textContent = info
    ? `${info.retained_events} events, ${formatBytes(info.retained_bytes)}; tail ${positionOf(info.tail_cursor)}; ${info.readers} readers`
    : 'not known to the daemon yet';
}

// -- one session, live --------------------------------------------------------

function addRow(row) {
  const log = $('log');
  const atBottom = log.scrollHeight - log.scrollTop - log.clientHeight < 40;
  log.append(row);
  while (log.childElementCount > MAX_ROWS) {
    log.firstElementChild.remove();
    current.dropped++;
  }
  if (current.dropped) {
    const note = $('dropped');
    note.hidden = false;
    note.textContent = `${current.dropped} older rows removed from this page (the daemon keeps its own retained window).`;
  }
  if (atBottom) log.scrollTop = log.scrollHeight;
}

function eventRow(event) {
  const row = el('li', 'event new');
  row.dataset.position = String(event.position);
  row.dataset.incarnation = event.replay_incarnation_id;
  row.title = event.cursor;
  const when = new Date(event.ts);
  const time = `${when.toLocaleTimeString([], { hour12: false })}.${String(when.getMilliseconds()).padStart(3, '0')}`;
  const meta = `rev ${event.revision}${event.turn_id ? ` · ${event.turn_id}` : ''}`;
  const full = JSON.stringify(event.payload);
  const preview = full.length > PAYLOAD_PREVIEW ? `${full.slice(0, PAYLOAD_PREVIEW)}…` : full;
  const payload = el('code', 'payload', preview);
  let open = false;
  payload.addEventListener('click', () => {
    open = !open;
    const pretty = JSON.stringify(event.payload, null, 2);
    payload.textContent = open
      ? pretty.length > PAYLOAD_FULL ? `${pretty.slice(0, PAYLOAD_FULL)}…` : pretty
      : preview;
  });
  row.append(el('span', 'pos', `#${event.position}`), el('span', 'meta', meta), el('span', 'meta', time), payload);
  return row;
}

function gapRow(gap) {
  const row = el('li', 'gap');
  row.dataset.reason = gap.reason;
  row.dataset.detail = gap.detail;
  const resume = gap.latest_cursor
    ? `continuing after ${positionOf(gap.latest_cursor)} of incarnation ${gap.latest_cursor.slice(8).split(':')[0]}`
    : 'reading the session from its start when it appears';
  row.append(
    el('strong', '', `GAP · ${gap.reason} · ${gap.detail}`),
    document.createTextNode(`${GAP_TEXT[gap.detail] ?? gap.detail}; events are missing here, ${resume}.`),
  );
  row.title = `requested ${gap.requested_cursor}`;
  return row;
}

function setStatus(status, reason) {
  const node = $('status');
  const was = node.dataset.status;
  node.dataset.status = status;
  node.textContent = reason && status !== 'caught_up' ? `${STATUS_TEXT[status]} · ${reason}` : STATUS_TEXT[status];
  if (current) {
    $('count-reconnects').textContent = String(current.sub?.stats.reconnects ?? 0);
    if (status === 'reconnecting' && was !== 'reconnecting') {
      addRow(el('li', 'marker trouble', `connection lost (${reason}); reconnecting…`));
    }
  }
}

function updateFacts() {
  const { sub } = current;
  $('cursor').textContent = sub.cursor;
  $('count-events').textContent = String(sub.stats.events);
  $('count-gaps').textContent = String(sub.stats.gaps);
}

function closeSession() {
  if (current) current.sub?.close();
  current = null;
}

function openSession(sessionId, start) {
  closeSession();
  $('session-empty').hidden = true;
  $('session').hidden = false;
  $('session-title').textContent = sessionId;
  $('log').replaceChildren();
  $('dropped').hidden = true;
  $('retained').textContent = '–';
  document.title = `${sessionId} · livereplay`;
  for (const row of $('sessions').tBodies[0].rows) {
    row.classList.toggle('selected', row.dataset.sessionId === sessionId);
  }
  current = { sessionId, sub: null, dropped: 0 };
  const session = current;
  session.sub = subscribe({
    sessionId,
    cursor: start,
    token: token || undefined,
    // An operator watching a restart wants the page back soon after the daemon.
    backoffCapMs: 5000,
    onStatus: (status, reason) => {
      if (current === session) setStatus(status, reason);
    },
    onEvents: (events) => {
      for (const event of events) addRow(eventRow(event));
      updateFacts();
    },
    onGap: (gap) => {
      addRow(gapRow(gap));
      updateFacts();
    },
    onCaughtUp: () => {
      addRow(el('li', 'marker', session.sub.stats.connects > 1 ? 'reconnected · caught up' : 'caught up · live from here'));
      updateFacts();
    },
    onError: (error) => {
      addRow(el('li', 'marker trouble', `the daemon refused this reader: ${error.code ?? error.closeCode}: ${error.message}`));
    },
  });
  updateFacts();
}

// -- routing: #/s/<session id> opens a session ---------------------------------

function route() {
  const match = /^#\/s\/(.+)$/.exec(location.hash);
  if (!match) {
    closeSession();
    $('session').hidden = true;
    $('session-empty').hidden = false;
    return;
  }
  const sessionId = decodeURIComponent(match[1]);
  const choice = $('start').value;
  const start = choice === 'cursor' ? $('start-cursor').value.trim() || 'earliest' : choice;
  openSession(sessionId, start);
}

$('token').value = token;
$('token').addEventListener('change', () => {
  token = $('token').value.trim();
  sessionStorage.setItem(TOKEN_KEY, token);
  pollSessions();
  route();
});
$('start').addEventListener('change', () => {
  $('start-cursor').hidden = $('start').value !== 'cursor';
});
$('start-form').addEventListener('submit', (event) => {
  event.preventDefault();
  route();
});
window.addEventListener('hashchange', route);
pollSessions();
route();
