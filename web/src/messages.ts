import { ApiError, rateLimit, session } from './api';
import { createStore } from './lib/store';

/** Until when (Unix ms) the server refuses: votes for the day, or any call for a while. */
export const dailyLimitUntil = createStore<number | null>(null);
export const rateLimitedUntil = createStore<number | null>(null);

// They belong to the user who got them.
session.subscribe((value) => {
  if (!value) {
    dailyLimitUntil.set(null);
    rateLimitedUntil.set(null);
    rateLimit.set(null);
  }
});

/** Remembers a 429 so the screens can show how long it lasts. */
export function noteLimits(error: unknown): void {
  if (!(error instanceof ApiError) || error.status !== 429) {
    return;
  }
  const until = Date.now() + (error.retryAfter ?? 60) * 1000;
  if (error.code === 'daily_vote_limit_reached') {
    dailyLimitUntil.set(until);
  } else {
    rateLimitedUntil.set(until);
  }
}

/** What to tell a person about a failed call, in words that say what to do next. */
export function describeError(error: unknown): string {
  if (!(error instanceof ApiError)) {
    return 'Something went wrong. Please try again.';
  }
  switch (error.code) {
    case 'network_error':
      return 'The server cannot be reached. Check your connection and try again.';
    case 'rate_limited':
      return `Too many requests. Try again in ${formatDuration(error.retryAfter ?? 60)}.`;
    case 'daily_vote_limit_reached':
      return `You have used all of today's votes. Voting opens again in ${formatDuration(error.retryAfter ?? 0)}.`;
    case 'already_voted':
      return 'You have already voted on this poll.';
    case 'poll_not_found':
      return 'This poll does not exist.';
    case 'busy':
      return 'The server is busy. Try again in a moment.';
    case 'unauthorized':
      return 'Your session has ended. Please log in again.';
    default:
      return error.isServerError ? 'Something went wrong on our side. Please try again.' : error.message;
  }
}

/** 42 s, 3 min 5 s, 5 h 12 min. */
export function formatDuration(totalSeconds: number): string {
  const s = Math.max(0, Math.ceil(totalSeconds));
  if (s < 60) {
    return `${s} s`;
  }
  if (s < 3600) {
    const rest = s % 60;
    return rest ? `${Math.floor(s / 60)} min ${rest} s` : `${s / 60} min`;
  }
  const minutes = Math.floor((s % 3600) / 60);
  return minutes ? `${Math.floor(s / 3600)} h ${minutes} min` : `${Math.floor(s / 3600)} h`;
}
