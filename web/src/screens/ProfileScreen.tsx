import { useEffect, useState } from 'preact/hooks';
import { api, live, session, type Poll, type UserWithQuota } from '../api';
import { TagList } from '../components/TagList';
import { useDocumentTitle } from '../lib/dom';
import { formatDate, plural } from '../lib/format';
import { describeError, noteLimits } from '../messages';
import { Link, navigate } from '../router';
import { MyPollList } from './MyPollList';

type Load<T> = { state: 'loading' } | { state: 'ok'; value: T } | { state: 'error'; message: string };

/** The signed-in user, today's vote quota, their polls, the polls they voted on and the hot polls. */
export function ProfileScreen() {
  const [me, setMe] = useState<Load<UserWithQuota>>({ state: 'loading' });
  const [hot, setHot] = useState<Load<Poll[]>>({ state: 'loading' });
  useDocumentTitle('Profile');

  useEffect(() => {
    api.me().then(
      (value) => setMe({ state: 'ok', value }),
      (error) => {
        noteLimits(error);
        setMe({ state: 'error', message: describeError(error) });
      },
    );
    api.hot(10).then(
      (value) => setHot({ state: 'ok', value: value.polls }),
      (error) => setHot({ state: 'error', message: describeError(error) }),
    );
  }, []);

  function logOut() {
    live.stop();
    session.set(null);
    navigate('/login', { replace: true });
  }

  return (
    <section class="screen profile" aria-labelledby="profile-title">
      <h1 id="profile-title" tabIndex={-1}>
        Profile
      </h1>
      <div class="card">
        {me.state === 'loading' && <p role="status">Loading your profile…</p>}
        {me.state === 'error' && <p role="alert">{me.message}</p>}
        {me.state === 'ok' && <Quota user={me.value} />}
        <button type="button" class="button secondary" onClick={logOut}>
          Log out
        </button>
      </div>

      <MyPollList kind="created" />
      <MyPollList kind="voted" />

      <section class="card" aria-labelledby="hot-title">
        <h2 id="hot-title">Hot right now</h2>
        <p class="hint">Most votes in the last hour.</p>
        {hot.state === 'loading' && <p role="status">Loading…</p>}
        {hot.state === 'error' && <p role="alert">{hot.message}</p>}
        {hot.state === 'ok' && hot.value.length === 0 && <p>No votes in the last hour yet.</p>}
        {hot.state === 'ok' && hot.value.length > 0 && (
          <ol class="hot">
            {hot.value.map((poll) => (
              <li key={poll.id}>
                <Link href={`/polls/${poll.id}`} class="hot-title">
                  {poll.title}
                </Link>
                <TagList tags={poll.tags} />
              </li>
            ))}
          </ol>
        )}
      </section>
    </section>
  );
}

function Quota({ user }: { user: UserWithQuota }) {
  const limit = user.votesToday + user.votesRemainingToday;
  return (
    <>
      <div>
        <h2 class="username">{user.username}</h2>
        <p class="identity">
          {user.email} · member since <time dateTime={user.createdAt}>{formatDate(user.createdAt)}</time>
        </p>
      </div>
      <dl class="facts">
        <div>
          <dt>Votes today</dt>
          <dd>{user.votesToday.toLocaleString('en')}</dd>
        </div>
        <div>
          <dt>Votes left today</dt>
          <dd>{user.votesRemainingToday.toLocaleString('en')}</dd>
        </div>
      </dl>
      <label for="quota" class="quota-label">
        {plural(user.votesToday, 'vote')} of {limit.toLocaleString('en')} used today (resets at midnight UTC)
      </label>
      <meter id="quota" class="quota" min={0} max={Math.max(limit, 1)} value={user.votesToday} />
    </>
  );
}
