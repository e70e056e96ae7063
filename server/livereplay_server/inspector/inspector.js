// The inspector page: the daemon's sessions, and one session's events live,
// read with the JavaScript client (/static/livereplay.js). Everything from the
// daemon is shown as text, never as markup (the page's CSP allows no inline
// script or style; sizes are set through the CSSOM, which it does not restrict).
//
// It keeps up with bursts of any size: the client's callbacks only append to a
// bounded ring of items (RING_LIMIT) and ask for a frame; once per animation
// frame the page updates its counters and renders a window of at most DOM_ROWS
// rows of fixed height inside a sizer as tall as the whole (filtered) list, so
// the DOM stays the same size whatever the session does.
import { subscribe } from '/static/livereplay.js';

const RING_LIMIT = 10_000; // items (events, gaps, notes) kept in memory per session
const DOM_ROWS = 200; // rows in the DOM at most: the window around what is on screen
const WINDOW_STEP = 20; // the window moves in steps of this many rows
const POLL_MS = 1000; // the session list, while the page is visible
const FACTS_MIN_MS = 250; // the open session's retained events and bytes, at most this often
const FETCH_TIMEOUT_MS = 5000;
const MAX_SESSION_PAGES = 10; // 1000 sessions listed at most
const PREVIEW_CHARS = 240;
const PAYLOAD_FULL = 200_000;
const RATE_WINDOW_MS = 5000;
const RATE_BUCKET_MS = 250;
const MAX_TYPES = 100;
const MAX_TURNS = 200;

const $ = (id) => document.getElementById(id);
const TOKEN_KEY = 'livereplay.token';

let token = sessionStorage.getItem(TOKEN_KEY) ?? '';
let current = null; // the open session: see openSession()
let pollTimer = null;
let polling = null;
let frame = 0;
let rowHeight = 26; // measured from a rendered row
let authFocused = false;

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

const number = new Intl.NumberFormat('en');

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function setText(node, text) {
  if (node.textContent !== text) node.textContent = text;
}

function authHeaders() {
  return token ? { Authorization: `Bearer ${token}` } : {};
}

/** The parts of a lashsc2 cursor, or null. */
function parseCursor(cursor) {
  if (typeof cursor !== 'string' || !cursor.startsWith('lashsc2:')) return null;
  const parts = cursor.slice(8).split(':');
  if (parts.length < 4) return null;
  return { incarnation: parts[0], revision: parts[1], position: parts[2], sessionId: parts.slice(3).join(':') };
}

function positionOf(cursor) {
  const parsed = parseCursor(cursor);
  return parsed ? `#${parsed.position}` : cursor ?? '–';
}

function formatBytes(n) {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1024 / 1024).toFixed(1)} MiB`;
}

function clock(ts) {
  const d = new Date(ts);
  const p = (n, w = 2) => String(n).padStart(w, '0');
  return `${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}.${p(d.getMilliseconds(), 3)}`;
}

/** An agent event's type: its payload's `type` (or `kind`) when that is a string. */
function typeOf(payload) {
  if (payload && typeof payload === 'object' && !Array.isArray(payload)) {
    if (typeof payload.type === 'string') return payload.type;
    if (typeof payload.kind === 'string') return payload.kind;
  }
  return '';
}

function announce(text) {
  const node = $('announce');
  node.textContent = '';
  // A change the screen reader notices even when the same text is said twice.
  requestAnimationFrame(() => {
    node.textContent = text;
  });
}

async function fetchJson(path) {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), FETCH_TIMEOUT_MS);
  try {
    const response = await fetch(path, { headers: authHeaders(), cache: 'no-store', signal: controller.signal });
    if (!response.ok) {
      const error = new Error(`HTTP ${response.status}`);
      error.status = response.status;
      throw error;
    }
    return await response.json();
  } catch (err) {
    if (err.name === 'AbortError') throw new Error('no answer');
    throw err;
  } finally {
    clearTimeout(timer);
  }
}

// -- authentication -------------------------------------------------------------

/** Show (or hide, with null) why the daemon refused the page, and where to fix it. */
function showAuth(status) {
  const banner = $('auth-needed');
  const input = $('token');
  if (status === null) {
    banner.hidden = true;
    input.removeAttribute('aria-invalid');
    authFocused = false;
    return;
  }
  let text;
  if (status === 401 && !token) {
    text = 'Authentication needed: this daemon has auth on. Paste a reader token (livereplay token --session S, '
      + 'or --prefix P) or the writer token into the token field above, then press Enter or Use.';
  } else if (status === 401) {
    text = 'The daemon refused this token (expired, or not signed with its reader key). Paste another one.';
  } else {
    text = 'This token does not allow that (HTTP 403). Paste a token that covers the session.';
  }
  setText(banner, text);
  banner.hidden = false;
  input.setAttribute('aria-invalid', 'true');
  if (!authFocused && (document.activeElement === document.body || document.activeElement === null)) {
    authFocused = true;
    input.focus();
  }
}

function useToken(value) {
  const next = value.trim();
  if (next === token) return;
  token = next;
  if (token) sessionStorage.setItem(TOKEN_KEY, token);
  else sessionStorage.removeItem(TOKEN_KEY);
  authFocused = false;
  pollSessions();
  if (current) openSession(current.sessionId, current.start);
}

// -- the sessions list --------------------------------------------------------

async function fetchSessions() {
  const sessions = [];
  let after = null;
  for (let page = 0; page < MAX_SESSION_PAGES; page++) {
    const query = new URLSearchParams({ limit: '100' });
    if (after) query.set('after', after);
    const body = await fetchJson(`/v1/sessions?${query}`);
    sessions.push(...body.sessions);
    after = body.next_after;
    if (!after) return { sessions, more: false };
  }
  return { sessions, more: true };
}

const sessionRows = new Map(); // session id -> <tr>, reused so focus and selection survive a refresh

function sessionRow(s) {
  let row = sessionRows.get(s.session_id);
  if (!row) {
    row = el('tr');
    row.dataset.sessionId = s.session_id;
    const link = el('a', '', s.session_id);
    link.href = `#/s/${encodeURIComponent(s.session_id)}`;
    const name = el('td', 'name');
    name.append(link);
    row.append(name, el('td', 'incarnation mono'), el('td', 'num mono'), el('td', 'num'), el('td', 'num'), el('td', 'num'));
    row.addEventListener('click', (event) => {
      if (event.target.closest('a')) return; // the link does it
      location.hash = link.getAttribute('href');
    });
    sessionRows.set(s.session_id, row);
  }
  updateSessionRow(row, s);
  return row;
}

function updateSessionRow(row, s) {
  const cells = row.cells;
  if (s.incarnation !== undefined) {
    setText(cells[1], s.incarnation);
    cells[1].title = s.incarnation;
  }
  if (s.tail_cursor !== undefined) {
    setText(cells[2], positionOf(s.tail_cursor));
    cells[2].title = s.tail_cursor ?? '';
  }
  if (s.retained_events !== undefined) setText(cells[3], String(s.retained_events));
  if (s.retained_bytes !== undefined) setText(cells[4], formatBytes(s.retained_bytes));
  if (s.readers !== undefined) setText(cells[5], String(s.readers));
  const selected = current?.sessionId === s.session_id;
  row.classList.toggle('selected', selected);
  if (selected) row.setAttribute('aria-current', 'true');
  else row.removeAttribute('aria-current');
}

function renderSessions(sessions, more) {
  const body = $('sessions').tBodies[0];
  const wanted = sessions.map(sessionRow);
  const ids = new Set(sessions.map((s) => s.session_id));
  for (const id of sessionRows.keys()) if (!ids.has(id)) sessionRows.delete(id);
  const same = wanted.length === body.rows.length && wanted.every((row, i) => body.rows[i] === row);
  if (!same) body.replaceChildren(...wanted);
  $('sessions').classList.remove('stale');
  $('sessions-note').textContent = sessions.length
    ? more ? `Showing the first ${sessions.length} sessions.` : ''
    : 'No sessions yet.';
}

function setDaemon(state, text) {
  const node = $('daemon');
  node.dataset.state = state;
  setText(node, text);
}

async function pollSessions() {
  clearTimeout(pollTimer);
  pollTimer = null;
  if (polling) return polling; // one at a time; the one in flight reschedules
  polling = (async () => {
    try {
      const { sessions, more } = await fetchSessions();
      renderSessions(sessions, more);
      setDaemon('ok', `daemon up · ${sessions.length}${more ? '+' : ''} sessions`);
      showAuth(null);
      if (current) {
        const info = sessions.find((s) => s.session_id === current.sessionId);
        if (info) {
          current.facts.readers = info.readers;
          current.facts.known = true;
          // The stream's own facts are newer than the list's while it is live.
          if (current.facts.retainedAt === 0) {
            current.facts.retainedEvents = info.retained_events;
            current.facts.retainedBytes = info.retained_bytes;
          }
          if (!current.facts.tail) current.facts.tail = info.tail_cursor;
        }
        requestRender();
      }
    } catch (err) {
      if (err.status === 401 || err.status === 403) {
        setDaemon('auth', err.status === 401
          ? token ? 'the daemon refused this token (HTTP 401)' : 'authentication needed (HTTP 401)'
          : 'this token may not list sessions (HTTP 403)');
        showAuth(err.status);
        if (!sessionRows.size) $('sessions-note').textContent = 'Sessions are listed once the daemon accepts a token.';
      } else {
        setDaemon('down', `daemon unreachable (${err.message})`);
      }
      $('sessions').classList.add('stale');
    } finally {
      polling = null;
      if (!document.hidden) pollTimer = setTimeout(pollSessions, POLL_MS);
    }
  })();
  return polling;
}

document.addEventListener('visibilitychange', () => {
  if (document.hidden) {
    clearTimeout(pollTimer);
    pollTimer = null;
  } else {
    pollSessions();
    requestRender();
  }
});

// -- the open session's facts ---------------------------------------------------

/** Fetch the open session's retained events and bytes: now, or as soon as allowed. */
function refreshFacts() {
  const session = current;
  if (!session) return;
  const facts = session.facts;
  if (facts.inFlight) {
    facts.again = true;
    return;
  }
  if (facts.timer) return;
  const wait = facts.fetchedAt + FACTS_MIN_MS - Date.now();
  if (wait > 0) {
    facts.timer = setTimeout(() => {
      facts.timer = null;
      refreshFacts();
    }, wait);
    return;
  }
  facts.inFlight = true;
  facts.fetchedAt = Date.now();
  fetchJson(`/v1/sessions/${encodeURIComponent(session.sessionId)}/cursor`)
    .then((info) => {
      if (current !== session) return;
      facts.known = true;
      facts.retainedEvents = info.retained_events;
      facts.retainedBytes = info.retained_bytes;
      facts.earliest = info.earliest_cursor;
      facts.retainedAt = Date.now();
      if (!facts.tail || tailPosition(info.cursor) >= tailPosition(facts.tail)) facts.tail = info.cursor;
      const row = sessionRows.get(session.sessionId);
      if (row) {
        updateSessionRow(row, {
          session_id: session.sessionId,
          incarnation: info.incarnation,
          tail_cursor: facts.tail,
          retained_events: info.retained_events,
          retained_bytes: info.retained_bytes,
        });
      }
    })
    .catch((err) => {
      if (current === session && err.status === 404) facts.known = false;
    })
    .finally(() => {
      facts.inFlight = false;
      if (current === session) {
        requestRender();
        if (facts.again) {
          facts.again = false;
          refreshFacts();
        }
      }
    });
}

function tailPosition(cursor) {
  const parsed = parseCursor(cursor);
  return parsed ? Number(parsed.position) : -1;
}

function noteTail(session, cursor) {
  if (!cursor) return;
  const known = parseCursor(session.facts.tail);
  const next = parseCursor(cursor);
  // A new incarnation's tail replaces the old one's whatever its position.
  if (!known || !next || known.incarnation !== next.incarnation || Number(next.position) >= Number(known.position)) {
    session.facts.tail = cursor;
  }
}

// -- one session, live: ingest ----------------------------------------------------

function addItem(session, item) {
  item.seq = ++session.seq;
  session.items.push(item);
  if (session.items.length >= RING_LIMIT * 2) trimRing(session); // a hidden page gets no frames
}

function trimRing(session) {
  const extra = session.items.length - RING_LIMIT;
  if (extra <= 0) return;
  session.items.splice(0, extra);
  session.dropped += extra;
  // An unfiltered, live view is the ring itself: its top rows left with these.
  if (session.view === session.items) session.viewTrimmed += extra;
}

function eventItem(event) {
  return { kind: 'event', event, type: typeOf(event.payload), turn: event.turn_id ?? '' };
}

function countRate(session, n) {
  const now = Date.now();
  const bucket = Math.floor(now / RATE_BUCKET_MS);
  const buckets = session.rate;
  if (buckets.length && buckets[buckets.length - 1][0] === bucket) buckets[buckets.length - 1][1] += n;
  else buckets.push([bucket, n]);
}

function rateOf(session) {
  const now = Date.now();
  const oldest = Math.floor((now - RATE_WINDOW_MS) / RATE_BUCKET_MS);
  const buckets = session.rate;
  while (buckets.length && buckets[0][0] <= oldest) buckets.shift();
  let total = 0;
  for (const [, n] of buckets) total += n;
  const span = Math.min(RATE_WINDOW_MS, Math.max(1000, now - session.openedAt));
  return Math.round((total * 1000) / span);
}

function noteKey(map, key, limit, keep) {
  if (!key) return false;
  const seen = map.get(key);
  if (seen !== undefined) {
    map.set(key, seen + 1);
    return false;
  }
  map.set(key, 1);
  if (map.size > limit) {
    for (const old of map.keys()) {
      if (old !== keep) {
        map.delete(old);
        break;
      }
    }
  }
  return true;
}

// -- one session, live: the view ------------------------------------------------

function filters() {
  return {
    text: $('filter-text').value.trim().toLowerCase(),
    type: $('filter-type').value,
    turn: $('filter-turn').value,
  };
}

function filtering(f) {
  return Boolean(f.text || f.type || f.turn);
}

function matches(item, f) {
  if (item.kind !== 'event') return true; // gaps and connection notes, always
  if (f.type && item.type !== f.type) return false;
  if (f.turn && item.turn !== f.turn) return false;
  if (f.text) {
    const e = item.event;
    const hay = `#${e.position} ${item.type} ${item.turn} ${JSON.stringify(e.payload)}`.toLowerCase();
    if (!hay.includes(f.text)) return false;
  }
  return true;
}

/** Bring the view (the items shown, filtered) up to date with the ring. */
function syncView(session) {
  const { items } = session;
  const oldest = items.length ? items[0].seq : session.seq + 1;
  if (session.paused) return 0; // frozen: the rows stay as they were when paused
  const f = session.filter;
  if (!filtering(f)) {
    const removed = session.view === items ? session.viewTrimmed : session.view.filter((i) => i.seq < oldest).length;
    session.view = items;
    session.viewTrimmed = 0;
    session.viewSeq = session.seq;
    return removed;
  }
  if (session.view === items) session.view = items.filter((i) => matches(i, f)); // a new filter
  let removed = 0;
  const view = session.view;
  while (removed < view.length && view[removed].seq < oldest) removed++;
  if (removed) view.splice(0, removed);
  if (session.viewSeq < session.seq) {
    // New items are at the end of the ring.
    let from = items.length;
    while (from > 0 && items[from - 1].seq > session.viewSeq) from--;
    for (let i = from; i < items.length; i++) if (matches(items[i], f)) view.push(items[i]);
    session.viewSeq = session.seq;
  }
  session.viewTrimmed = 0;
  return removed;
}

function rebuildView(session) {
  session.filter = filters();
  session.view = filtering(session.filter) ? session.items.filter((i) => matches(i, session.filter)) : session.items;
  session.viewSeq = session.seq;
  session.viewTrimmed = 0;
  session.renderedKey = '';
}

function requestRender() {
  if (!frame) frame = requestAnimationFrame(render);
}

function render() {
  frame = 0;
  const session = current;
  if (!session) return;
  trimRing(session);
  const removed = syncView(session);
  renderOptions(session);
  renderList(session, removed);
  renderFacts(session);
}

function renderOptions(session) {
  const log = $('log');
  log.classList.toggle('no-type', session.types.size === 0);
  log.classList.toggle('no-turn', session.turns.size === 0);
  if (session.typesDirty) {
    session.typesDirty = false;
    fillSelect($('filter-type'), 'all types', [...session.types.keys()].sort());
  }
  if (session.turnsDirty) {
    session.turnsDirty = false;
    fillSelect($('filter-turn'), 'all turns', [...session.turns.keys()].reverse());
  }
}

function fillSelect(select, allText, values) {
  const chosen = select.value;
  const options = [new Option(allText, '')];
  for (const value of values) options.push(new Option(value, value));
  if (chosen && !values.includes(chosen)) options.push(new Option(chosen, chosen));
  select.replaceChildren(...options);
  select.value = chosen;
}

function renderList(session, removed) {
  const log = $('log');
  const rows = $('rows');
  const view = session.view;
  const n = view.length;
  const live = session.follow && !session.paused;
  // Reads first (the layout is clean at the start of a frame), then writes only,
  // so the frame lays the list out once.
  const height = log.clientHeight;
  let top = log.scrollTop;
  if (live) top = Math.max(0, n * rowHeight - height);
  else if (removed > 0) top = Math.max(0, top - removed * rowHeight);
  const visible = Math.ceil(height / rowHeight) + 1;
  let start;
  if (live) {
    start = n - DOM_ROWS;
  } else {
    const first = Math.floor(top / rowHeight);
    start = Math.floor((first - Math.floor((DOM_ROWS - visible) / 2)) / WINDOW_STEP) * WINDOW_STEP;
  }
  start = Math.max(0, Math.min(start, n - DOM_ROWS));
  const end = Math.min(n, start + DOM_ROWS);
  const sizer = $('log-sizer');
  const sizerHeight = `${n * rowHeight}px`;
  if (sizer.style.height !== sizerHeight) sizer.style.height = sizerHeight;
  const key = n ? `${view[start].seq}-${view[end - 1].seq}-${end - start}-${rowHeight}` : 'empty';
  if (key !== session.renderedKey) {
    session.renderedKey = key;
    const cache = session.nodes;
    const fresh = new Map();
    const nodes = [];
    for (let i = start; i < end; i++) {
      const item = view[i];
      const node = cache.get(item.seq) ?? rowFor(item);
      fresh.set(item.seq, node);
      nodes.push(node);
    }
    session.nodes = fresh;
    rows.style.transform = `translateY(${start * rowHeight}px)`;
    rows.replaceChildren(...nodes);
    markSelected(session);
  }
  if (live || removed > 0) scrollTo(session, top);
  if (needMeasure && n) measureRows();
}

/** Scroll the list from the code; the scroll handler tells it from the reader's own. */
function scrollTo(session, top) {
  const log = $('log');
  if (Math.abs(log.scrollTop - top) >= 1) log.scrollTop = top;
  session.scrolledTo = log.scrollTop;
}

let needMeasure = true; // the row height, once rows exist and after a resize
function measureRows() {
  const first = $('rows').firstElementChild;
  if (!first) return;
  needMeasure = false;
  const h = first.getBoundingClientRect().height;
  if (h > 0 && Math.abs(h - rowHeight) > 0.25) {
    rowHeight = h;
    if (current) current.renderedKey = '';
    requestRender();
  }
}

function renderFacts(session) {
  const { sub, facts } = session;
  const stats = sub.stats;
  setText($('cursor'), sub.cursor);
  setText($('count-events'), number.format(stats.events));
  setText($('count-gaps'), number.format(stats.gaps));
  setText($('count-reconnects'), String(stats.reconnects));
  setText($('rate'), number.format(rateOf(session)));
  const tail = $('tail');
  setText(tail, facts.tail ? positionOf(facts.tail) : '–');
  tail.title = facts.tail ?? '';
  setText($('retained'), facts.retainedEvents === null
    ? facts.known ? '–' : 'not known to the daemon yet'
    : `${number.format(facts.retainedEvents)} events, ${formatBytes(facts.retainedBytes)}`
      + (facts.earliest ? ` · from ${positionOf(facts.earliest)}` : ''));
  setText($('readers'), facts.readers === null ? '–' : String(facts.readers));

  const f = session.filter;
  const shown = session.view.length;
  const kept = session.items.length;
  let text = filtering(f)
    ? `${number.format(shown)} of ${number.format(kept)} rows match the filter`
    : `${number.format(kept)} ${kept === 1 ? 'row' : 'rows'}`;
  if (session.dropped) {
    text += ` · ${number.format(session.dropped)} older ${session.dropped === 1 ? 'row' : 'rows'} no longer kept on this page `
      + `(it keeps the last ${number.format(RING_LIMIT)}; the daemon keeps its own retained window)`;
  }
  setText($('shown'), text);

  const pause = $('pause');
  setText(pause, session.paused ? 'Resume' : 'Pause');
  pause.setAttribute('aria-pressed', String(session.paused));
  $('live').hidden = session.follow && !session.paused;
  const waiting = session.seq - session.seenSeq;
  let pending = '';
  if (session.paused) pending = `paused · ${number.format(waiting)} new since`;
  else if (!session.follow) pending = `${number.format(waiting)} new below`;
  setText($('pending'), pending);
  if (session.follow && !session.paused) session.seenSeq = session.seq;
}

// -- rows -------------------------------------------------------------------------

function rowFor(item) {
  const row = el('li', item.kind);
  row.id = `row-${item.seq}`;
  row.dataset.seq = String(item.seq);
  row.setAttribute('role', 'option');
  row.setAttribute('aria-selected', 'false');
  if (item.kind === 'event') {
    const e = item.event;
    row.dataset.position = String(e.position);
    row.dataset.incarnation = e.replay_incarnation_id;
    if (item.type) row.dataset.type = item.type;
    const json = JSON.stringify(e.payload) ?? 'null';
    const preview = json.length > PREVIEW_CHARS ? `${json.slice(0, PREVIEW_CHARS)}…` : json;
    row.append(
      el('span', 'pos', `#${e.position}`),
      el('span', 'time', clock(e.ts)),
      el('span', 'type', item.type || '·'),
      el('span', 'turn', item.turn || ''),
      el('code', 'payload', preview),
    );
    row.title = e.cursor;
  } else if (item.kind === 'gap') {
    const gap = item.gap;
    row.dataset.reason = gap.reason;
    row.dataset.detail = gap.detail;
    row.append(el('strong', '', `GAP · ${gap.reason} · ${gap.detail}`), el('span', 'text', gapText(gap)));
    row.title = `requested ${gap.requested_cursor}`;
  } else {
    if (item.trouble) row.classList.add('trouble');
    row.append(el('span', 'text', item.text));
  }
  return row;
}

function gapText(gap) {
  const resume = gap.latest_cursor
    ? `continuing after ${positionOf(gap.latest_cursor)} of incarnation ${parseCursor(gap.latest_cursor)?.incarnation}`
    : 'reading the session from its start when it appears';
  return `${GAP_TEXT[gap.detail] ?? gap.detail}; events are missing here, ${resume}.`;
}

function note(session, text, trouble = false) {
  addItem(session, { kind: 'marker', text, trouble });
  requestRender();
}

// -- selection and details ------------------------------------------------------

function markSelected(session) {
  const log = $('log');
  for (const node of $('rows').querySelectorAll('li.selected')) {
    node.classList.remove('selected');
    node.setAttribute('aria-selected', 'false');
  }
  const node = session.selected ? session.nodes.get(session.selected.seq) : null;
  if (node) {
    node.classList.add('selected');
    node.setAttribute('aria-selected', 'true');
    log.setAttribute('aria-activedescendant', node.id);
  } else {
    log.removeAttribute('aria-activedescendant');
  }
}

function indexInView(session, seq) {
  const view = session.view;
  let lo = 0;
  let hi = view.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    if (view[mid].seq === seq) return mid;
    if (view[mid].seq < seq) lo = mid + 1;
    else hi = mid - 1;
  }
  return -1;
}

function select(session, item, { reveal = false } = {}) {
  session.selected = item;
  markSelected(session);
  showDetail(item);
  if (reveal && item) {
    const index = indexInView(session, item.seq);
    const log = $('log');
    const top = index * rowHeight;
    if (top < log.scrollTop) scrollTo(session, top);
    else if (top + rowHeight > log.scrollTop + log.clientHeight) scrollTo(session, top + rowHeight - log.clientHeight);
    session.follow = index === session.view.length - 1;
    requestRender();
  }
}

function showDetail(item) {
  const detail = $('detail');
  if (!item) {
    detail.hidden = true;
    return;
  }
  detail.hidden = false;
  const facts = [];
  let payload = '';
  let cursor = null;
  let title;
  if (item.kind === 'event') {
    const e = item.event;
    title = `event #${e.position}`;
    cursor = e.cursor;
    facts.push(['cursor', e.cursor], ['revision', String(e.revision)], ['turn', e.turn_id ?? '–'],
      ['type', item.type || '–'], ['received', `${new Date(e.ts).toISOString()}`],
      ['incarnation', e.replay_incarnation_id]);
    const pretty = JSON.stringify(e.payload, null, 2) ?? 'null';
    payload = pretty.length > PAYLOAD_FULL ? `${pretty.slice(0, PAYLOAD_FULL)}\n… (${pretty.length} characters)` : pretty;
  } else if (item.kind === 'gap') {
    const gap = item.gap;
    title = `gap · ${gap.reason} · ${gap.detail}`;
    cursor = gap.latest_cursor;
    facts.push(['meaning', gapText(gap)], ['requested', gap.requested_cursor], ['latest', gap.latest_cursor ?? '–'],
      ['latest revision', String(gap.latest_revision ?? '–')], ['earliest retained', gap.earliest_cursor ?? '–']);
  } else {
    title = 'connection note';
    facts.push(['note', item.text]);
  }
  setText($('detail-title'), title);
  const list = $('detail-facts');
  list.replaceChildren(...facts.map(([k, v]) => {
    const group = el('div', 'fact');
    group.append(el('dt', '', k), el('dd', v.startsWith('lashsc2:') ? 'mono selectable' : '', v));
    return group;
  }));
  $('detail-payload').textContent = payload;
  $('detail-payload').hidden = !payload;
  $('copy-item-cursor').hidden = !cursor;
  $('copy-item-cursor').dataset.cursor = cursor ?? '';
  $('read-from-here').hidden = !cursor;
  $('only-turn').hidden = !(item.kind === 'event' && item.turn);
}

async function copyText(text, what, button) {
  let ok = false;
  try {
    await navigator.clipboard.writeText(text);
    ok = true;
  } catch {
    // No clipboard API here (or no permission): the old way, from a selected text area.
    const area = el('textarea', 'offscreen');
    area.value = text;
    area.setAttribute('readonly', '');
    document.body.append(area);
    area.select();
    try {
      ok = document.execCommand('copy');
    } catch {
      ok = false;
    }
    area.remove();
    button?.focus();
  }
  if (button) {
    button.dataset.copied = ok ? 'yes' : 'no';
    const label = button.textContent;
    button.textContent = ok ? 'Copied' : 'Copy failed';
    setTimeout(() => {
      button.textContent = label;
      delete button.dataset.copied;
    }, 1200);
  }
  announce(ok ? `copied the ${what}` : `could not copy the ${what}: select it and copy it by hand`);
}

// -- opening a session ----------------------------------------------------------

function setStatus(session, status, reason) {
  const node = $('status');
  const was = node.dataset.status;
  node.dataset.status = status;
  setText(node, reason && status !== 'caught_up' ? `${STATUS_TEXT[status]} · ${reason}` : STATUS_TEXT[status]);
  if (status === 'reconnecting' && was !== 'reconnecting') note(session, `connection lost (${reason}); reconnecting…`, true);
  if (status === 'caught_up' || status === 'reconnecting') pollSoon();
  requestRender();
}

let pollSoonTimer = null;
/** The readers count changes when this page connects: ask for the list again shortly. */
function pollSoon() {
  if (pollSoonTimer) return;
  pollSoonTimer = setTimeout(() => {
    pollSoonTimer = null;
    pollSessions();
  }, 200);
}

function closeSession() {
  if (current) {
    current.sub?.close();
    clearTimeout(current.facts.timer);
  }
  current = null;
}

function openSession(sessionId, start) {
  closeSession();
  $('session-empty').hidden = true;
  $('session').hidden = false;
  setText($('session-title'), sessionId);
  $('rows').replaceChildren();
  $('log').scrollTop = 0;
  $('detail').hidden = true;
  document.title = `${sessionId} · livereplay`;
  for (const [id, row] of sessionRows) {
    row.classList.toggle('selected', id === sessionId);
    if (id === sessionId) row.setAttribute('aria-current', 'true');
    else row.removeAttribute('aria-current');
  }
  const known = sessionRows.get(sessionId);
  const session = {
    sessionId,
    start,
    sub: null,
    items: [],
    view: null,
    viewSeq: 0,
    viewTrimmed: 0,
    seq: 0,
    seenSeq: 0,
    dropped: 0,
    paused: false,
    follow: true,
    scrolledTo: 0,
    selected: null,
    nodes: new Map(),
    renderedKey: '',
    rate: [],
    openedAt: Date.now(),
    types: new Map(),
    turns: new Map(),
    typesDirty: true,
    turnsDirty: true,
    filter: filters(),
    facts: {
      tail: null,
      retainedEvents: null,
      retainedBytes: null,
      earliest: null,
      readers: known ? Number(known.cells[5].textContent) : null,
      known: true,
      retainedAt: 0,
      fetchedAt: 0,
      inFlight: false,
      again: false,
      timer: null,
    },
  };
  session.view = session.items;
  // Filters are kept across sessions, but the type and turn lists are this session's.
  current = session;
  session.sub = subscribe({
    sessionId,
    cursor: start,
    token: token || undefined,
    // An operator watching a restart wants the page back soon after the daemon.
    backoffCapMs: 5000,
    onStatus: (status, reason) => {
      if (current === session) setStatus(session, status, reason);
    },
    onHello: (hello) => {
      noteTail(session, hello.head);
      refreshFacts();
      requestRender();
    },
    onHeartbeat: (head) => {
      noteTail(session, head);
      refreshFacts();
      requestRender();
    },
    onEvents: (events) => {
      for (const event of events) {
        const item = eventItem(event);
        if (noteKey(session.types, item.type, MAX_TYPES, session.filter.type)) session.typesDirty = true;
        if (noteKey(session.turns, item.turn, MAX_TURNS, session.filter.turn)) session.turnsDirty = true;
        addItem(session, item);
      }
      countRate(session, events.length);
      noteTail(session, events[events.length - 1].cursor);
      refreshFacts();
      requestRender();
    },
    onGap: (gap) => {
      addItem(session, { kind: 'gap', gap });
      noteTail(session, gap.latest_cursor);
      refreshFacts();
      requestRender();
    },
    onCaughtUp: () => {
      note(session, session.sub.stats.connects > 1 ? 'reconnected · caught up' : 'caught up · live from here');
    },
    onError: (error) => {
      if (error.closeCode === 4401) {
        note(session, token
          ? 'the daemon refused this token (4401): paste another one in the token field'
          : 'authentication needed (4401): paste a reader token in the token field', true);
        showAuth(401);
      } else if (error.closeCode === 4403) {
        note(session, 'this token does not cover this session (4403): paste one that does', true);
        showAuth(403);
      } else {
        note(session, `the daemon refused this reader: ${error.code ?? error.closeCode}: ${error.message}`, true);
      }
    },
  });
  rebuildView(session);
  session.typesDirty = session.turnsDirty = true;
  requestRender();
}

// -- routing: #/s/<session id> opens a session ---------------------------------

function resetStart() {
  $('start').value = 'earliest';
  $('start-cursor').value = '';
  $('start-cursor').hidden = true;
  $('start-error').hidden = true;
}

/**
 * Where to start reading `sessionId`, or null (and a message) for a cursor that
 * is not one of its own. A cursor is typed for the session open at the time: it
 * is used only when the form is sent, and forgotten when another session opens.
 */
function startOf(sessionId, fromForm) {
  const choice = $('start').value;
  if (choice !== 'cursor') return choice;
  if (!fromForm) {
    resetStart();
    return 'earliest';
  }
  const typed = $('start-cursor').value.trim();
  if (!typed) return 'earliest';
  const parsed = parseCursor(typed);
  const error = $('start-error');
  if (!parsed) {
    error.textContent = 'not a cursor: a cursor starts with lashsc2:';
  } else if (parsed.sessionId !== sessionId) {
    error.textContent = `that cursor belongs to session ${parsed.sessionId}`;
  } else {
    error.hidden = true;
    return typed;
  }
  error.hidden = false;
  $('start-cursor').focus();
  return null;
}

function route(fromForm = false) {
  const match = /^#\/s\/(.+)$/.exec(location.hash);
  if (!match) {
    closeSession();
    $('session').hidden = true;
    $('session-empty').hidden = false;
    document.title = 'livereplay inspector';
    return;
  }
  let sessionId;
  try {
    sessionId = decodeURIComponent(match[1]);
  } catch {
    return;
  }
  const start = startOf(sessionId, fromForm);
  if (start === null) return;
  openSession(sessionId, start);
}

// -- wiring -----------------------------------------------------------------------

$('token').value = token;
$('token-form').addEventListener('submit', (event) => {
  event.preventDefault();
  useToken($('token').value);
});
$('token').addEventListener('change', () => useToken($('token').value));

$('start').addEventListener('change', () => {
  const custom = $('start').value === 'cursor';
  $('start-cursor').hidden = !custom;
  $('start-error').hidden = true;
  if (custom) $('start-cursor').focus();
});
$('start-form').addEventListener('submit', (event) => {
  event.preventDefault();
  route(true);
});

let filterTimer = null;
function applyFilters() {
  clearTimeout(filterTimer);
  filterTimer = null;
  if (!current) return;
  if (!current.paused) {
    rebuildView(current);
    requestRender();
  } else {
    current.filter = filters(); // applied on resume
  }
}
$('filters').addEventListener('submit', (event) => {
  event.preventDefault();
  applyFilters();
});
$('filter-text').addEventListener('input', () => {
  clearTimeout(filterTimer);
  filterTimer = setTimeout(applyFilters, 120);
});
$('filter-type').addEventListener('change', applyFilters);
$('filter-turn').addEventListener('change', applyFilters);

function setPaused(session, paused) {
  if (session.paused === paused) return;
  if (paused) {
    session.paused = true;
    session.view = session.view.slice(); // a snapshot: the ring goes on filling underneath
    session.seenSeq = session.seq;
  } else {
    session.paused = false;
    rebuildView(session);
  }
  requestRender();
}

function jumpToLive(session) {
  setPaused(session, false);
  session.follow = true;
  session.renderedKey = '';
  requestRender();
}

$('pause').addEventListener('click', () => {
  if (current) setPaused(current, !current.paused);
});
$('live').addEventListener('click', () => {
  if (!current) return;
  jumpToLive(current);
  $('log').focus();
});
$('copy-cursor').addEventListener('click', (event) => {
  if (current) copyText(current.sub.cursor, 'cursor', event.currentTarget);
});
$('copy-item-cursor').addEventListener('click', (event) => {
  const cursor = event.currentTarget.dataset.cursor;
  if (cursor) copyText(cursor, 'cursor', event.currentTarget);
});
$('read-from-here').addEventListener('click', () => {
  const cursor = $('copy-item-cursor').dataset.cursor;
  if (!current || !cursor) return;
  $('start').value = 'cursor';
  $('start-cursor').hidden = false;
  $('start-cursor').value = cursor;
  route(true);
});
$('only-turn').addEventListener('click', () => {
  const item = current?.selected;
  if (!item?.turn) return;
  const select = $('filter-turn');
  if (![...select.options].some((o) => o.value === item.turn)) select.append(new Option(item.turn, item.turn));
  select.value = item.turn;
  applyFilters();
});
$('detail-close').addEventListener('click', () => {
  if (!current) return;
  select(current, null);
  $('log').focus();
});

const log = $('log');
log.addEventListener('scroll', () => {
  const session = current;
  if (!session) return;
  const atBottom = log.scrollHeight - log.scrollTop - log.clientHeight <= rowHeight / 2;
  if (atBottom) session.follow = true;
  // Up from where the page last put it: the reader is looking back, stop following.
  else if (log.scrollTop < session.scrolledTo - 1) session.follow = false;
  session.scrolledTo = log.scrollTop;
  requestRender();
}, { passive: true });
$('rows').addEventListener('click', (event) => {
  const row = event.target.closest('li');
  if (!row || !current) return;
  const index = indexInView(current, Number(row.dataset.seq));
  if (index >= 0) select(current, current.view[index]);
  log.focus({ preventScroll: true });
});
log.addEventListener('keydown', (event) => {
  const session = current;
  if (!session || event.altKey || event.ctrlKey || event.metaKey) return;
  const view = session.view;
  if (!view.length) return;
  const page = Math.max(1, Math.floor(log.clientHeight / rowHeight) - 1);
  const at = session.selected ? indexInView(session, session.selected.seq) : -1;
  let next = null;
  switch (event.key) {
    case 'ArrowDown': next = at < 0 ? view.length - 1 : Math.min(view.length - 1, at + 1); break;
    case 'ArrowUp': next = at < 0 ? view.length - 1 : Math.max(0, at - 1); break;
    case 'PageDown': next = Math.min(view.length - 1, Math.max(0, at) + page); break;
    case 'PageUp': next = Math.max(0, (at < 0 ? view.length - 1 : at) - page); break;
    case 'Home': next = 0; break;
    case 'End':
      event.preventDefault();
      jumpToLive(session);
      select(session, session.view.at(-1) ?? null);
      return;
    case 'Enter':
    case ' ':
      if (at >= 0) {
        event.preventDefault();
        showDetail(view[at]);
        $('detail-payload').focus();
      }
      return;
    case 'Escape':
      select(session, null);
      return;
    default:
      return;
  }
  event.preventDefault();
  select(session, view[next], { reveal: true });
});
new ResizeObserver(() => {
  needMeasure = true; // the font size may have changed with the window
  if (current) current.renderedKey = '';
  requestRender();
}).observe(log);
setInterval(() => {
  if (current && !document.hidden) requestRender(); // the rate decays when nothing comes
}, 1000);

window.addEventListener('hashchange', () => route());
pollSessions();
route();
