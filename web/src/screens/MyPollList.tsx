import type { ComponentChildren } from 'preact';
import { useCallback, useEffect, useRef, useState } from 'preact/hooks';
import { api, ApiError, live, stats, usePollStats, type MyPollsPage, type MyPollsQuery, type PollView } from '../api';
import { Results } from '../components/Results';
import { TagList } from '../components/TagList';
import { timeAgo } from '../lib/format';
import { describeError, noteLimits } from '../messages';
import { Link } from '../router';

const kPageSize = 10;

type Fetch = (query: MyPollsQuery, signal: AbortSignal) => Promise<MyPollsPage>;

const kLists = {
  created: {
    id: 'my-polls',
    title: 'My polls',
    /** Completes "Load more …" and "Try again loading …" for screen readers. */
    what: 'my polls',
    fetch: api.myPolls,
    empty: () => (
      <>
        You have not created a poll yet. <Link href="/new">Create a poll</Link>
      </>
    ),
  },
  voted: {
    id: 'my-votes',
    title: 'Polls I voted on',
    what: 'polls I voted on',
    fetch: api.myVotes,
    empty: () => (
      <>
        You have not voted yet. <Link href="/">Go to your feed</Link>
      </>
    ),
  },
} satisfies Record<string, { id: string; title: string; what: string; fetch: Fetch; empty: () => ComponentChildren }>;

interface ListState {
  polls: PollView[];
  cursor: string | null;
  status: 'loading' | 'ready' | 'end' | 'error';
  error: string | null;
}

const kInitial: ListState = { polls: [], cursor: null, status: 'loading', error: null };

/** One of the caller's lists, page by page on `nextCursor`; a page's counts go to the stats cache. */
function usePollPages(fetchPage: Fetch) {
  const [state, setState] = useState<ListState>(kInitial);
  const inFlight = useRef<AbortController | null>(null);

  const load = useCallback(
    async (cursor: string | null) => {
      inFlight.current?.abort();
      const controller = new AbortController();
      inFlight.current = controller;
      setState((s) => (cursor === null ? kInitial : { ...s, status: 'loading', error: null }));
      try {
        const page = await fetchPage({ limit: kPageSize, cursor: cursor ?? undefined }, controller.signal);
        for (const poll of page.polls) {
          if (poll.stats) {
            stats.put(poll.stats);
          }
        }
        setState((s) => {
          const known = new Set(s.polls.map((poll) => poll.id));
          return {
            polls: [...s.polls, ...page.polls.filter((poll) => !known.has(poll.id))],
            cursor: page.nextCursor,
            status: page.nextCursor ? 'ready' : 'end',
            error: null,
          };
        });
      } catch (error) {
        if (controller.signal.aborted) {
          return;
        }
        if (cursor !== null && error instanceof ApiError && error.code === 'invalid_cursor') {
          void load(null); // issued by an older server: start again from the top
          return;
        }
        noteLimits(error);
        setState((s) => ({ ...s, status: 'error', error: describeError(error) }));
      }
    },
    [fetchPage],
  );

  useEffect(() => {
    void load(null);
    return () => inFlight.current?.abort();
  }, [load]);

  const cursor = state.cursor;
  /** The next page, or after a failure the same page again (the first when nothing is shown). */
  const more = useCallback(() => void load(cursor), [load, cursor]);
  return { state, more };
}

/** "My polls" or "Polls I voted on": title, tags and live results of each, and "Load more". */
export function MyPollList({ kind }: { kind: keyof typeof kLists }) {
  const list = kLists[kind];
  const { state, more } = usePollPages(list.fetch);
  const listRef = useRef<HTMLOListElement>(null);
  const headingRef = useRef<HTMLHeadingElement>(null);
  /** After "Load more": the index of the first new poll, which gets the keyboard focus. */
  const focusFrom = useRef<number | null>(null);
  const titleId = `${list.id}-title`;
  const { polls, status } = state;

  useEffect(() => {
    const from = focusFrom.current;
    if (from === null || status === 'loading' || status === 'error') {
      return; // the button stays where it was (and says "Try again" after a failure)
    }
    focusFrom.current = null;
    const first = listRef.current?.children[from]?.querySelector<HTMLElement>('a');
    (first ?? headingRef.current)?.focus({ preventScroll: true });
  }, [status, polls.length]);

  function loadMore() {
    if (status === 'loading') {
      return;
    }
    focusFrom.current = polls.length;
    more();
  }

  const busy = status === 'loading';
  return (
    <section class="card my-list" aria-labelledby={titleId} aria-busy={busy ? 'true' : undefined}>
      <h2 id={titleId} ref={headingRef} tabIndex={-1}>
        {list.title}
      </h2>
      {polls.length > 0 && (
        <ol class="summaries" ref={listRef}>
          {polls.map((poll) => (
            <li key={poll.id}>
              <PollSummary poll={poll} idPrefix={list.id} />
            </li>
          ))}
        </ol>
      )}
      {busy && polls.length === 0 && <p role="status">Loading…</p>}
      {status === 'end' && polls.length === 0 && <p class="list-empty">{list.empty()}</p>}
      {status === 'error' && (
        <p class="list-error" role="alert">
          {state.error}
        </p>
      )}
      {(status === 'ready' || status === 'error' || (busy && polls.length > 0)) && (
        <button
          type="button"
          class="button secondary small"
          aria-disabled={busy ? 'true' : undefined}
          onClick={loadMore}
        >
          {busy ? 'Loading…' : status === 'error' ? 'Try again' : 'Load more'}
          <span class="visually-hidden">{busy ? '' : status === 'error' ? ` loading ${list.what}` : ` ${list.what}`}</span>
        </button>
      )}
    </section>
  );
}

/** A poll in a profile list: its title (a link to it), tags and results, live while shown. */
function PollSummary({ poll, idPrefix }: { poll: PollView; idPrefix: string }) {
  const current = usePollStats(poll.id) ?? poll.stats;
  const titleId = `${idPrefix}-${poll.id}-title`;
  useEffect(() => live.follow(poll.id), [poll.id]);

  return (
    <article class="summary" aria-labelledby={titleId} data-poll-id={poll.id}>
      <header class="summary-head">
        <h3 id={titleId} class="summary-title">
          <Link href={`/polls/${poll.id}`}>{poll.title}</Link>
        </h3>
        <p class="card-meta">
          Posted <time dateTime={poll.createdAt}>{timeAgo(poll.createdAt)}</time>
        </p>
      </header>
      <TagList tags={poll.tags} />
      <Results stats={current} options={poll.options} myVote={poll.myVote ?? null} labelledBy={titleId} />
    </article>
  );
}
