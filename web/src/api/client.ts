import { createStore } from '../lib/store';
import { ApiError } from './errors';
import { session, token } from './session';
import type {
  FeedPage,
  FeedQuery,
  HotPolls,
  LoginRequest,
  MyPollsPage,
  MyPollsQuery,
  NewPoll,
  PollView,
  RegisterRequest,
  Session,
  SkipResult,
  Stats,
  UserWithQuota,
  VoteResult,
  WsTicket,
} from './types';

/** The per-user request budget from the last answer's X-RateLimit-* headers. */
export interface RateLimitInfo {
  limit: number;
  remaining: number;
  /** Unix milliseconds when the window frees a request. */
  resetAt: number;
}

export const rateLimit = createStore<RateLimitInfo | null>(null);

interface Call {
  method: 'GET' | 'POST' | 'PATCH';
  path: string;
  query?: Record<string, string | number | undefined>;
  body?: unknown;
  /** Register and login go without a token. */
  anonymous?: boolean;
  idempotencyKey?: string;
  signal?: AbortSignal;
}

async function call<T>(req: Call): Promise<T> {
  const headers: Record<string, string> = { Accept: 'application/json' };
  if (!req.anonymous) {
    const bearer = token();
    if (!bearer) {
      throw new ApiError(401, 'unauthorized', 'You are signed out.');
    }
    headers.Authorization = `Bearer ${bearer}`;
  }
  if (req.body !== undefined) {
    headers['Content-Type'] = 'application/json';
  }
  if (req.idempotencyKey) {
    headers['Idempotency-Key'] = req.idempotencyKey;
  }

  let response: Response;
  try {
    response = await fetch(url(req.path, req.query), {
      method: req.method,
      headers,
      body: req.body === undefined ? null : JSON.stringify(req.body),
      signal: req.signal ?? null,
      credentials: 'omit',
      cache: 'no-store',
    });
  } catch (cause) {
    if (cause instanceof DOMException && cause.name === 'AbortError') {
      throw cause;
    }
    throw new ApiError(0, 'network_error', 'The server cannot be reached.');
  }

  readRateLimit(response.headers, req.anonymous === true);
  const body: unknown = response.status === 204 ? undefined : await response.json().catch(() => undefined);
  if (response.ok) {
    return body as T;
  }
  const error = ApiError.fromBody(response.status, body, retryAfter(response.headers));
  if (error.status === 401 && !req.anonymous) {
    // The token expired or its user is gone: sign out, the app shows the login screen.
    session.set(null);
  }
  throw error;
}

function url(path: string, query: Call['query']): string {
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(query ?? {})) {
    if (value !== undefined && value !== '') {
      params.set(key, String(value));
    }
  }
  const search = params.toString();
  return search ? `${path}?${search}` : path;
}

function readRateLimit(headers: Headers, anonymous: boolean): void {
  const remaining = Number(headers.get('X-RateLimit-Remaining') ?? NaN);
  const reset = Number(headers.get('X-RateLimit-Reset') ?? NaN);
  const limit = Number(headers.get('X-RateLimit-Limit') ?? NaN);
  // On register and login they describe the per-address limit, not the user's budget.
  if (anonymous || !Number.isFinite(remaining) || !Number.isFinite(reset)) {
    return;
  }
  rateLimit.set({ limit, remaining, resetAt: reset * 1000 });
}

function retryAfter(headers: Headers): number | null {
  const raw = headers.get('Retry-After');
  if (raw === null) {
    return null;
  }
  const seconds = Number(raw);
  if (Number.isFinite(seconds)) {
    return Math.max(0, seconds);
  }
  const date = Date.parse(raw);
  return Number.isNaN(date) ? null : Math.max(0, Math.ceil((date - Date.now()) / 1000));
}

/** A v4 UUID; crypto.randomUUID exists only in secure contexts, getRandomValues everywhere. */
export function newIdempotencyKey(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  bytes[6] = ((bytes[6] ?? 0) & 0x0f) | 0x40;
  bytes[8] = ((bytes[8] ?? 0) & 0x3f) | 0x80;
  const hex = Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

export const api = {
  register: (body: RegisterRequest) =>
    call<Session>({ method: 'POST', path: '/api/auth/register', body, anonymous: true }),
  login: (body: LoginRequest) => call<Session>({ method: 'POST', path: '/api/auth/login', body, anonymous: true }),
  me: () => call<UserWithQuota>({ method: 'GET', path: '/api/users/me' }),
  /** The caller's polls, newest first, each with its counts. */
  myPolls: (query: MyPollsQuery, signal?: AbortSignal) =>
    call<MyPollsPage>({ method: 'GET', path: '/api/users/me/polls', query: { ...query }, ...(signal ? { signal } : {}) }),
  /** The polls the caller voted on, newest poll first, with `myVote` and the counts. */
  myVotes: (query: MyPollsQuery, signal?: AbortSignal) =>
    call<MyPollsPage>({ method: 'GET', path: '/api/users/me/votes', query: { ...query }, ...(signal ? { signal } : {}) }),

  feed: (query: FeedQuery, signal?: AbortSignal) =>
    call<FeedPage>({ method: 'GET', path: '/api/polls', query: { ...query }, ...(signal ? { signal } : {}) }),
  hot: (limit = 10) => call<HotPolls>({ method: 'GET', path: '/api/polls/hot', query: { limit } }),
  poll: (id: number) => call<PollView>({ method: 'GET', path: `/api/polls/${id}` }),
  createPoll: (body: NewPoll) => call<PollView>({ method: 'POST', path: '/api/polls', body }),
  stats: (id: number) => call<Stats>({ method: 'GET', path: `/api/polls/${id}/stats` }),

  /** Pass the same key again to retry the same vote safely. */
  vote: (id: number, optionIndex: number, idempotencyKey = newIdempotencyKey()) =>
    call<VoteResult>({ method: 'POST', path: `/api/polls/${id}/vote`, body: { optionIndex }, idempotencyKey }),
  skip: (id: number, idempotencyKey = newIdempotencyKey()) =>
    call<SkipResult>({ method: 'POST', path: `/api/polls/${id}/skip`, body: {}, idempotencyKey }),

  wsTicket: () => call<WsTicket>({ method: 'POST', path: '/api/ws/ticket' }),
};
