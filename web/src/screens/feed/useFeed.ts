import { useCallback, useEffect, useRef, useState } from 'preact/hooks';
import { api, ApiError, live, type PollView } from '../../api';
import { describeError, noteLimits } from '../../messages';

const kPageSize = 10;

export interface FeedItem {
  poll: PollView;
  hidden: boolean;
  notice?: string | undefined;
}

export interface FeedState {
  items: FeedItem[];
  cursor: string | null;
  status: 'loading' | 'ready' | 'end' | 'error';
  error: string | null;
  /** Polls announced over the WebSocket since the list was loaded. */
  newPolls: number;
}

const kInitial: FeedState = { items: [], cursor: null, status: 'loading', error: null, newPolls: 0 };

/**
 * The caller's feed for one filter, page by page. Nothing is cached across loads: the server
 * returns only unanswered polls, so a reload never shows an answered one again.
 */
export function useFeed(tag: string | undefined, q: string | undefined) {
  const [state, setState] = useState<FeedState>(kInitial);
  const inFlight = useRef<AbortController | null>(null);
  const seen = useRef(new Set<number>());

  const load = useCallback(
    async (cursor: string | null) => {
      inFlight.current?.abort();
      const controller = new AbortController();
      inFlight.current = controller;
      if (cursor === null) {
        seen.current = new Set();
        window.scrollTo(0, 0);
      }
      setState((s) => (cursor === null ? kInitial : { ...s, status: 'loading', error: null }));
      try {
        const page = await api.feed({ tag, q, limit: kPageSize, cursor: cursor ?? undefined }, controller.signal);
        const fresh = page.polls.filter((poll) => !seen.current.has(poll.id));
        fresh.forEach((poll) => seen.current.add(poll.id));
        setState((s) => ({
          ...s,
          items: [...s.items, ...fresh.map((poll) => ({ poll, hidden: false }))],
          cursor: page.nextCursor,
          status: page.nextCursor ? 'ready' : 'end',
          error: null,
        }));
      } catch (error) {
        if (controller.signal.aborted) {
          return;
        }
        if (error instanceof ApiError && error.code === 'invalid_cursor') {
          void load(null); // issued by an older server: start again from the top
          return;
        }
        noteLimits(error);
        setState((s) => ({ ...s, status: 'error', error: describeError(error) }));
      }
    },
    [tag, q],
  );

  useEffect(() => {
    void load(null);
    return () => inFlight.current?.abort();
  }, [load]);

  useEffect(
    () =>
      live.onPollCreated((poll) => {
        // `q` is matched by the server's full-text search; only a tag can be checked here.
        if (q || (tag && !poll.tags.includes(tag)) || seen.current.has(poll.id)) {
          return;
        }
        seen.current.add(poll.id);
        setState((s) => ({ ...s, newPolls: s.newPolls + 1 }));
      }),
    [tag, q],
  );

  const update = useCallback((id: number, change: Partial<FeedItem>) => {
    setState((s) => ({ ...s, items: s.items.map((item) => (item.poll.id === id ? { ...item, ...change } : item)) }));
  }, []);

  /** Optimistic: the card goes at once and comes back with a message if the server refuses. */
  const skip = useCallback(
    async (id: number) => {
      update(id, { hidden: true, notice: undefined });
      try {
        await api.skip(id);
      } catch (error) {
        if (error instanceof ApiError && error.code === 'already_voted') {
          return; // answered elsewhere; it is gone from the feed either way
        }
        noteLimits(error);
        update(id, { hidden: false, notice: `The poll was not skipped. ${describeError(error)}` });
      }
    },
    [update],
  );

  const cursor = state.cursor;
  const loadMore = useCallback(() => {
    if (cursor !== null) {
      void load(cursor);
    }
  }, [load, cursor]);
  const reload = useCallback(() => void load(null), [load]);
  /** After a failed page: the same page again (the first one when nothing is shown). */
  const retry = useCallback(() => void load(cursor), [load, cursor]);

  return { state, loadMore, reload, retry, skip };
}
