import { createStore } from '../lib/store';
import { api } from './client';
import { ApiError } from './errors';
import { stats } from './stats';
import type { Poll, WsClientMessage, WsServerMessage } from './types';

/** What the header shows: updates flowing, being re-established, or no network at all. */
export type LiveState = 'idle' | 'connecting' | 'live' | 'reconnecting' | 'offline';

const kBaseDelayMs = 500;
const kMaxDelayMs = 30_000;

/**
 * The WebSocket at /api/ws: one per tab, opened with a one-time ticket, reconnected with
 * exponential backoff and full jitter. Components follow polls (reference counted); after a
 * (re)connect every followed poll is subscribed again and, once acknowledged, its counts
 * refetched, since pushes sent while the socket was down are lost.
 */
class LiveConnection {
  readonly state = createStore<LiveState>('idle');
  private socket: WebSocket | null = null;
  private running = false;
  private fetchingTicket = false;
  private attempt = 0;
  private connectedBefore = false;
  private retryTimer: ReturnType<typeof setTimeout> | undefined;
  private readonly followers = new Map<number, number>();
  private readonly toSubscribe = new Set<number>();
  private readonly toUnsubscribe = new Set<number>();
  private flushQueued = false;
  /** Polls to refetch when the server acknowledges their subscription. */
  private readonly resync = new Set<number>();
  private readonly createdListeners = new Set<(poll: Poll) => void>();

  constructor() {
    window.addEventListener('online', () => this.wake());
    // A socket that outlives the network sees nothing of what happened meanwhile: drop it and
    // start again (with a resync) when the network is back.
    window.addEventListener('offline', () => {
      if (!this.running) {
        return;
      }
      this.state.set('offline');
      const socket = this.socket;
      this.socket = null;
      socket?.close();
      clearTimeout(this.retryTimer);
    });
  }

  start(): void {
    if (this.running) {
      return;
    }
    this.running = true;
    this.attempt = 0;
    this.connectedBefore = false;
    void this.connect();
  }

  stop(): void {
    this.running = false;
    clearTimeout(this.retryTimer);
    this.socket?.close(1000, 'signed out');
    this.socket = null;
    this.state.set('idle');
  }

  /** Live counts for a poll until the returned function is called. */
  follow(pollId: number): () => void {
    const count = this.followers.get(pollId) ?? 0;
    this.followers.set(pollId, count + 1);
    if (count === 0) {
      this.toUnsubscribe.delete(pollId);
      this.toSubscribe.add(pollId);
      this.queueFlush();
    }
    let done = false;
    return () => {
      if (done) {
        return;
      }
      done = true;
      const left = (this.followers.get(pollId) ?? 1) - 1;
      if (left > 0) {
        this.followers.set(pollId, left);
        return;
      }
      this.followers.delete(pollId);
      this.toSubscribe.delete(pollId);
      this.toUnsubscribe.add(pollId);
      this.queueFlush();
    };
  }

  onPollCreated(listener: (poll: Poll) => void): () => void {
    this.createdListeners.add(listener);
    return () => this.createdListeners.delete(listener);
  }

  private async connect(): Promise<void> {
    if (!this.running) {
      return;
    }
    if (!navigator.onLine) {
      this.state.set('offline');
      return; // the 'online' event wakes us
    }
    if (this.fetchingTicket) {
      return;
    }
    this.state.set(this.connectedBefore ? 'reconnecting' : 'connecting');
    let ticket: string;
    this.fetchingTicket = true;
    try {
      ticket = (await api.wsTicket()).ticket;
    } catch (error) {
      if (error instanceof ApiError && error.status === 401) {
        this.stop(); // signed out; the app shows the login screen
        return;
      }
      this.retryLater(error instanceof ApiError ? error.retryAfter : null);
      return;
    } finally {
      this.fetchingTicket = false;
    }
    if (!this.running || this.socket) {
      return;
    }
    const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
    const socket = new WebSocket(`${scheme}//${location.host}/api/ws?ticket=${encodeURIComponent(ticket)}`);
    this.socket = socket;
    socket.onopen = () => this.opened(socket);
    socket.onmessage = (event) => this.received(event.data);
    socket.onclose = () => {
      if (this.socket !== socket) {
        return;
      }
      this.socket = null;
      this.retryLater(null);
    };
  }

  private opened(socket: WebSocket): void {
    if (this.socket !== socket) {
      return;
    }
    this.connectedBefore = true;
    this.attempt = 0;
    this.state.set('live');
    this.toSubscribe.clear();
    this.toUnsubscribe.clear();
    // Counts fetched before this socket's subscription took effect may have missed pushes (all
    // of them after a reconnect): refetch each poll once the server acknowledges it.
    const ids = [...this.followers.keys()];
    if (ids.length > 0) {
      ids.forEach((id) => this.resync.add(id));
      this.send({ type: 'subscribe', pollIds: ids });
    }
  }

  private retryLater(retryAfterSeconds: number | null): void {
    if (!this.running) {
      return;
    }
    clearTimeout(this.retryTimer);
    this.attempt += 1;
    const ceiling = Math.min(kMaxDelayMs, kBaseDelayMs * 2 ** this.attempt);
    const delay = Math.max(retryAfterSeconds ? retryAfterSeconds * 1000 : 0, 250 + Math.random() * ceiling);
    this.state.set(navigator.onLine ? 'reconnecting' : 'offline');
    this.retryTimer = setTimeout(() => void this.connect(), delay);
  }

  /** The network is back: try now instead of waiting out the backoff. */
  private wake(): void {
    if (!this.running || this.socket) {
      return;
    }
    clearTimeout(this.retryTimer);
    this.attempt = 0;
    void this.connect();
  }

  private received(data: unknown): void {
    if (typeof data !== 'string') {
      return;
    }
    let message: WsServerMessage;
    try {
      message = JSON.parse(data) as WsServerMessage;
    } catch {
      return;
    }
    switch (message.type) {
      case 'stats':
        stats.put(message.stats);
        break;
      case 'poll_created':
        this.createdListeners.forEach((listener) => listener(message.poll));
        break;
      case 'subscribed':
        this.refetch(message.pollIds.filter((id) => this.resync.delete(id)));
        break;
      default:
        break;
    }
  }

  /** Counts that changed while the socket was down; only for polls still followed. */
  private refetch(ids: number[]): void {
    for (const id of ids) {
      if (this.followers.has(id)) {
        api.stats(id).then(
          (value) => stats.put(value),
          () => undefined,
        );
      }
    }
  }

  private queueFlush(): void {
    if (this.flushQueued) {
      return;
    }
    this.flushQueued = true;
    queueMicrotask(() => {
      this.flushQueued = false;
      if (this.socket?.readyState !== WebSocket.OPEN) {
        return; // opened() subscribes everything followed
      }
      if (this.toUnsubscribe.size > 0) {
        this.send({ type: 'unsubscribe', pollIds: [...this.toUnsubscribe] });
        this.toUnsubscribe.clear();
      }
      if (this.toSubscribe.size > 0) {
        this.send({ type: 'subscribe', pollIds: [...this.toSubscribe] });
        this.toSubscribe.clear();
      }
    });
  }

  private send(message: WsClientMessage): void {
    this.socket?.send(JSON.stringify(message));
  }
}

export const live = new LiveConnection();
