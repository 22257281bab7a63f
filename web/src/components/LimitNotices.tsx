import { live, rateLimit } from '../api';
import { useStore, useTicker } from '../lib/store';
import { dailyLimitUntil, formatDuration, rateLimitedUntil } from '../messages';

/** The states that stop votes for a while: the daily limit, the request rate, no network. */
export function LimitNotices() {
  const daily = useStore(dailyLimitUntil);
  const limited = useStore(rateLimitedUntil);
  const budget = useStore(rateLimit);
  const liveState = useStore(live.state);
  const now = useTicker(daily !== null || limited !== null || (budget?.remaining ?? 99) <= 5);
  const dailyLeft = daily === null ? 0 : (daily - now) / 1000;
  const limitedLeft = limited === null ? 0 : (limited - now) / 1000;

  return (
    <div class="notices">
      {liveState === 'offline' && (
        <div class="notice warn" role="status">
          <strong>You are offline.</strong> Votes cannot be sent until the connection is back; live results resume
          then.
        </div>
      )}
      {dailyLeft > 0 && (
        <div class="notice warn" role="alert">
          <strong>Daily vote limit reached.</strong> You have used all of today's votes. Voting opens again in{' '}
          <span aria-live="off">{formatDuration(dailyLeft)}</span> (midnight UTC). You can still skip polls.
        </div>
      )}
      {limitedLeft > 0 && (
        <div class="notice warn" role="alert">
          <strong>Too many requests.</strong> Please wait <span aria-live="off">{formatDuration(limitedLeft)}</span>{' '}
          before trying again.
        </div>
      )}
      {limitedLeft <= 0 && budget && budget.remaining <= 5 && budget.resetAt > now && (
        <div class="notice" role="status">
          Slow down: {budget.remaining} {budget.remaining === 1 ? 'request' : 'requests'} left for the next{' '}
          <span aria-live="off">{formatDuration((budget.resetAt - now) / 1000)}</span>.
        </div>
      )}
    </div>
  );
}
