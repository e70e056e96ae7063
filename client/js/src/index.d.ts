// Types of the livereplay reader (src/index.js). PROTOCOL.md sections 2, 4 and 7.

/** An event as the daemon sends it. `cursor` is opaque: pass it back to resume. */
export interface LiveReplayEvent {
  session_id: string;
  replay_incarnation_id: string;
  turn_id: string | null;
  revision: number;
  position: number;
  cursor: string;
  /** The daemon's receive time, Unix milliseconds. */
  ts: number;
  payload: unknown;
}

/** Events that cannot be served; reading resumes after `latest_cursor` (or from the start). */
export interface Gap {
  session_id: string;
  requested_cursor: string;
  latest_cursor: string | null;
  latest_revision: number | null;
  reason: 'trimmed' | 'unavailable';
  detail:
    | 'retention'
    | 'lagged'
    | 'writer_overflow'
    | 'incarnation_changed'
    | 'ahead_of_tail'
    | 'unknown_session'
    | 'session_deleted';
  earliest_cursor: string | null;
}

/** What the daemon's `hello` frame says about a new connection. */
export interface Hello {
  /** Where reading starts (a word resolved to a cursor); null while the session is unknown. */
  cursor: string | null;
  /** The session's tail cursor when the connection opened; null while the session is unknown. */
  head: string | null;
  heartbeat_s: number;
}

export type Status = 'connecting' | 'connected' | 'caught_up' | 'reconnecting' | 'closed' | 'failed';

/** Why the reader stopped for good: a close with 44xx (or a URL that cannot be used). */
export interface ReaderFailure {
  closeCode: number | null;
  /** The daemon's error code, e.g. `malformed_cursor`, when it sent one. */
  code: string | null;
  message: string;
}

/** The WebSocket constructor the reader uses: the browser's, Node's, or any with that interface. */
export type WebSocketConstructor = new (url: string, protocols?: string | string[]) => WebSocket;

export interface SubscribeOptions {
  /** The daemon's base URL (http(s):// or ws(s)://); in a page it defaults to the page's origin. */
  url?: string;
  sessionId: string;
  /** A cursor of this session, `earliest` (the default) or `latest`. */
  cursor?: string;
  /** A reader token; sent as the subprotocol `livereplay.token.<token>`. */
  token?: string;
  /** New events, in order, each delivered once. */
  onEvents?: (events: LiveReplayEvent[]) => void;
  onGap?: (gap: Gap) => void;
  /** Once per connection, when the backlog has been delivered; null while the session is unknown. */
  onCaughtUp?: (cursor: string | null) => void;
  /** Each connection's `hello` (before its backlog): where it reads from, and the tail. */
  onHello?: (hello: Hello) => void;
  /** Each heartbeat: the session's tail cursor (null while it is unknown) on a quiet connection. */
  onHeartbeat?: (head: string | null) => void;
  /** Each change of state; `reason` says why a connection was lost. */
  onStatus?: (status: Status, reason?: string) => void;
  /** The reader stopped for good (status `failed`). */
  onError?: (error: ReaderFailure) => void;
  WebSocket?: WebSocketConstructor;
  /** Reconnect backoff: full jitter in [0, min(cap, base * 2^attempt)). Defaults 100 and 10000. */
  backoffBaseMs?: number;
  backoffCapMs?: number;
  /** A connection that lasted this long resets the backoff. Default 10000. */
  healthyMs?: number;
  /** How long to wait for the daemon's first frame. Default 10000. */
  connectTimeoutMs?: number;
  /** Silence longer than heartbeat_s * this (at least heartbeat_s + 1 s) is a dead daemon. Default 2. */
  heartbeatTolerance?: number;
  /** Source of randomness for the jitter, in [0, 1). */
  random?: () => number;
}

export interface ReaderStats {
  /** Connections that got the daemon's hello. */
  connects: number;
  /** Such connections after the first. */
  reconnects: number;
  heartbeatTimeouts: number;
  duplicatesDropped: number;
  events: number;
  gaps: number;
}

export interface Subscription {
  /** Stop reading; no callback is called after this. */
  close(): void;
  /** Where a new connection would resume: the last delivered event, the last gap, or the start. */
  readonly cursor: string;
  readonly status: Status;
  readonly stats: ReaderStats;
}

/** The frame counters `ReaderState` keeps (a subset of `ReaderStats`). */
export interface StateStats {
  duplicatesDropped: number;
  events: number;
  gaps: number;
}

/** What `ReaderState.receive` gives to deliver, in order. */
export type ReaderItem =
  | { type: 'events'; events: LiveReplayEvent[] }
  | { type: 'gap'; gap: Gap }
  | { type: 'caught_up'; cursor: string | null };

/** A frame decoded from JSON text; `ReaderState` checks its `type`. */
export interface Frame {
  type: string;
  [field: string]: unknown;
}

/** The daemon sent something protocol 1 does not allow where it came; final. */
export class ReaderProtocolError extends Error {}

/**
 * The reader's resume rules with no I/O and no timers (the Python reader's
 * `ReaderMachine` has the same; both pass tests/vectors/reader.json).
 */
export class ReaderState<S extends StateStats = StateStats> {
  constructor(start: string, stats?: S);
  /** Where the next connection starts. */
  cursor: string;
  readonly stats: S;
  /** This connection's hello frame, once it came. */
  hello: Frame | null;
  /** A new connection opened at `cursor`. */
  connected(): void;
  /** The connection closed: a 44xx returns the final failure, anything else null (resume). */
  closed(code: number, reason?: string): ReaderFailure | null;
  /** The items to deliver for one frame; throws `ReaderProtocolError`. */
  receive(frame: Frame): ReaderItem[];
}

/** A WebSocket message as a frame (a JSON object); throws `ReaderProtocolError`. */
export function decodeFrame(data: string): Frame;

export const JSON_SUBPROTOCOL: 'livereplay.v1.json';
export const TOKEN_SUBPROTOCOL_PREFIX: 'livereplay.token.';

export function subscribe(options: SubscribeOptions): Subscription;
export function backoffDelay(
  attempt: number,
  baseMs: number,
  capMs: number,
  random?: () => number,
): number;
export function streamUrl(url: string, sessionId: string, cursor: string): string;
export function cursorPoint(cursor: string | null | undefined): [string, bigint] | null;
