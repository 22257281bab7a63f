import { useEffect, useRef } from 'preact/hooks';
import { LimitNotices } from '../../components/LimitNotices';
import { PollCard } from '../../components/PollCard';
import { useDocumentTitle } from '../../lib/dom';
import { Link, useLocation } from '../../router';
import { FilterBar } from './FilterBar';
import { useFeed } from './useFeed';

/** The vertical feed: one card per unanswered poll, more loaded as the end comes into view. */
export function FeedScreen() {
  const { query } = useLocation();
  const tag = query.get('tag')?.trim().toLowerCase() || undefined;
  const q = query.get('q')?.trim() || undefined;
  const { state, loadMore, reload, retry, skip } = useFeed(tag, q);
  const visible = state.items.filter((item) => !item.hidden);
  const filtered = Boolean(tag || q);
  useDocumentTitle(filtered ? filterTitle(tag, q) : 'Feed');

  return (
    <section class="screen feed" aria-labelledby="feed-title">
      <h1 id="feed-title" tabIndex={-1}>
        {filterTitle(tag, q)}
      </h1>
      <FilterBar tag={tag} q={q} />
      <LimitNotices />

      {state.newPolls > 0 && (
        <button type="button" class="new-polls" onClick={reload}>
          {state.newPolls === 1 ? 'A new poll was posted' : `${state.newPolls} new polls were posted`} · show
        </button>
      )}

      {visible.length > 0 && (
        <ol class="cards" aria-label="Polls">
          {visible.map((item) => (
            <li key={item.poll.id}>
              <PollCard poll={item.poll} notice={item.notice} onSkip={(poll) => void skip(poll.id)} />
            </li>
          ))}
        </ol>
      )}

      {state.status === 'loading' && (
        <p class="feed-status" role="status">
          Loading polls…
        </p>
      )}
      {state.status === 'error' && (
        <div class="feed-status error" role="alert">
          <p>{state.error}</p>
          <button type="button" class="button" onClick={retry}>
            Try again
          </button>
        </div>
      )}
      {state.status === 'ready' && <MoreTrigger onReach={loadMore} />}
      {state.status === 'end' && <FeedEnd empty={visible.length === 0} filtered={filtered} />}
    </section>
  );
}

function filterTitle(tag: string | undefined, q: string | undefined): string {
  if (tag && q) {
    return `#${tag} polls matching “${q}”`;
  }
  if (tag) {
    return `Polls tagged #${tag}`;
  }
  return q ? `Polls matching “${q}”` : 'Your feed';
}

/** Loads the next page when it scrolls near the viewport; also a button for keyboards. */
function MoreTrigger({ onReach }: { onReach: () => void }) {
  const ref = useRef<HTMLDivElement>(null);
  useEffect(() => {
    const node = ref.current;
    if (!node) {
      return undefined;
    }
    const observer = new IntersectionObserver((entries) => entries.some((e) => e.isIntersecting) && onReach(), {
      rootMargin: '0px 0px 600px 0px',
    });
    observer.observe(node);
    return () => observer.disconnect();
  }, [onReach]);
  return (
    <div ref={ref} class="more">
      <button type="button" class="button secondary" onClick={onReach}>
        Load more polls
      </button>
    </div>
  );
}

function FeedEnd({ empty, filtered }: { empty: boolean; filtered: boolean }) {
  if (!empty) {
    return (
      <p class="feed-status" role="status">
        You have seen every poll{filtered ? ' that matches' : ''}. <Link href="/new">Create one</Link>
      </p>
    );
  }
  return (
    <div class="empty" role="status">
      <h2>{filtered ? 'No polls match' : 'You are all caught up'}</h2>
      <p>
        {filtered
          ? 'No unanswered poll matches this filter. Try other words or another tag.'
          : 'There is no poll left that you have not answered.'}
      </p>
      <p>
        {filtered ? (
          <>
            <Link href="/">Show all polls</Link> or <Link href="/new">create a poll</Link>.
          </>
        ) : (
          <Link href="/new">Create a poll</Link>
        )}
      </p>
    </div>
  );
}
