import { useEffect, useState } from 'preact/hooks';
import { api, ApiError, session, stats, type PollView } from '../api';
import { PollCard } from '../components/PollCard';
import { useDocumentTitle } from '../lib/dom';
import { useStore } from '../lib/store';
import { describeError, noteLimits } from '../messages';
import { Link, navigate } from '../router';
import { justCreated } from './CreatePollScreen';

/** One poll by id (a shared link, a hot poll, a poll just created, with its live results for its creator). */
export function PollScreen({ id }: { id: number }) {
  const me = useStore(session);
  const created = justCreated.get();
  const [poll, setPoll] = useState<PollView | null>(created?.id === id ? created : null);
  const [error, setError] = useState<string | null>(null);
  const [isNew] = useState(created?.id === id);
  useDocumentTitle(poll ? poll.title : 'Poll');

  useEffect(() => {
    justCreated.set(null);
    setError(null);
    api.poll(id).then(setPoll, (failure) => {
      setError(failure instanceof ApiError && failure.code === 'poll_not_found' ? 'This poll does not exist.' : describeError(failure));
    });
  }, [id]);

  const mine = poll !== null && poll.creatorId === me?.user.id;
  useEffect(() => {
    if (mine && !poll?.stats) {
      api.stats(id).then((value) => stats.put(value), () => undefined);
    }
  }, [mine, id, poll]);

  async function skip() {
    try {
      await api.skip(id);
      navigate('/');
    } catch (failure) {
      noteLimits(failure);
      setError(`The poll was not skipped. ${describeError(failure)}`);
    }
  }

  return (
    <section class="screen poll" aria-labelledby="poll-screen-title">
      <h1 id="poll-screen-title" tabIndex={-1}>
        {isNew ? 'Your poll is live' : mine ? 'Your poll' : 'Poll'}
      </h1>
      {isNew && (
        <p class="notice ok" role="status">
          Published. Results below update live as people vote.
        </p>
      )}
      {error && (
        <p class="notice warn" role="alert">
          {error} <Link href="/">Back to the feed</Link>
        </p>
      )}
      {poll && (
        <PollCard
          poll={poll}
          alwaysShowResults={mine}
          onSkip={mine ? undefined : () => void skip()}
        />
      )}
      {!poll && !error && <p role="status">Loading the poll…</p>}
    </section>
  );
}
