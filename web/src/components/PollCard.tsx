import { useEffect, useRef, useState } from 'preact/hooks';
import { api, ApiError, live, newIdempotencyKey, stats, usePollStats, type Poll, type PollView } from '../api';
import { timeAgo } from '../lib/format';
import { useStore } from '../lib/store';
import { dailyLimitUntil, describeError, formatDuration, noteLimits } from '../messages';
import { Results } from './Results';
import { TagList } from './TagList';

type Phase = { kind: 'open' } | { kind: 'saving'; option: number } | { kind: 'voted'; option: number };

interface PollCardProps {
  poll: Poll | PollView;
  /** Results even before the caller answers: the creator watching their own poll. */
  alwaysShowResults?: boolean;
  /** Absent: no skip button. */
  onSkip?: (poll: Poll) => void;
  /** A message from the list that holds the card (a skip that was refused). */
  notice?: string | undefined;
  headingLevel?: 2 | 3;
}

/** One poll: vote with one tap (optimistic, rolled back if refused), skip, then live results. */
export function PollCard({ poll, alwaysShowResults = false, onSkip, notice, headingLevel = 2 }: PollCardProps) {
  const initialVote = 'myVote' in poll ? (poll.myVote ?? null) : null;
  const [phase, setPhase] = useState<Phase>(initialVote === null ? { kind: 'open' } : { kind: 'voted', option: initialVote });
  const [error, setError] = useState<string | null>(null);
  const [announcement, setAnnouncement] = useState('');
  const resultsRef = useRef<HTMLDivElement>(null);
  const current = usePollStats(poll.id);
  const limitUntil = useStore(dailyLimitUntil);
  const titleId = `poll-${poll.id}-title`;
  const showResults = phase.kind === 'voted' || alwaysShowResults;

  useEffect(() => {
    if ('stats' in poll && poll.stats) {
      stats.put(poll.stats);
    }
  }, [poll]);

  useEffect(() => (showResults ? live.follow(poll.id) : undefined), [showResults, poll.id]);

  async function vote(option: number) {
    if (phase.kind !== 'open') {
      return;
    }
    if (limitUntil !== null && limitUntil > Date.now()) {
      setError(`You have used all of today's votes. Voting opens again in ${formatDuration((limitUntil - Date.now()) / 1000)}.`);
      return;
    }
    setError(null);
    setPhase({ kind: 'saving', option });
    setAnnouncement(`Saving your vote for ${poll.options[option] ?? ''}…`);
    try {
      const result = await api.vote(poll.id, option, newIdempotencyKey());
      stats.put(result.stats);
      settle(result.optionIndex, `Vote saved: ${poll.options[result.optionIndex] ?? ''}.`);
    } catch (failure) {
      if (failure instanceof ApiError && failure.code === 'already_voted') {
        // Voted from another tab or device: show that vote, not an error.
        const fresh = await api.poll(poll.id).catch(() => null);
        if (fresh?.stats) {
          stats.put(fresh.stats);
        }
        settle(fresh?.myVote ?? option, 'You had already voted on this poll.');
        return;
      }
      noteLimits(failure);
      setPhase({ kind: 'open' });
      setAnnouncement('');
      setError(`Your vote was not saved. ${describeError(failure)}`);
    }
  }

  function settle(option: number, message: string) {
    setPhase({ kind: 'voted', option });
    setAnnouncement(message);
    // The option buttons are gone: keep the keyboard in this card.
    requestAnimationFrame(() => resultsRef.current?.focus());
  }

  const Heading = headingLevel === 2 ? 'h2' : 'h3';
  const myVote = phase.kind === 'open' ? null : phase.option;
  const message = error ?? notice;
  return (
    <article class="card" aria-labelledby={titleId} data-poll-id={poll.id}>
      <header class="card-head">
        <Heading id={titleId} class="card-title" tabIndex={-1}>
          {poll.title}
        </Heading>
        <p class="card-meta">
          <time dateTime={poll.createdAt}>{timeAgo(poll.createdAt)}</time>
        </p>
      </header>
      <TagList tags={poll.tags} />

      {phase.kind !== 'voted' && (
        <div class="options" role="group" aria-labelledby={titleId}>
          {poll.options.map((text, index) => {
            const chosen = phase.kind === 'saving' && phase.option === index;
            return (
              <button
                key={index}
                type="button"
                class={chosen ? 'option chosen' : 'option'}
                aria-disabled={phase.kind === 'saving' ? 'true' : undefined}
                onClick={() => void vote(index)}
              >
                <span class="option-text">{text}</span>
                {chosen && <span class="option-state"> · saving…</span>}
              </button>
            );
          })}
        </div>
      )}

      {showResults && (
        <div class="results-wrap" ref={resultsRef} tabIndex={-1} aria-label={`Results: ${poll.title}`}>
          <Results
            stats={current}
            soFar={phase.kind !== 'voted'}
            options={poll.options}
            myVote={myVote}
            labelledBy={titleId}
          />
        </div>
      )}

      <p class="visually-hidden" role="status">
        {announcement}
      </p>
      {message && (
        <p class="card-error" role="alert">
          {message}
        </p>
      )}

      {onSkip && phase.kind === 'open' && (
        <div class="card-actions">
          <button type="button" class="skip" onClick={() => onSkip(poll)}>
            Skip<span class="visually-hidden"> “{poll.title}”</span>
          </button>
        </div>
      )}
    </article>
  );
}
