// The one module that knows the API: HTTP calls, the live WebSocket, the session and its types.
export { api, newIdempotencyKey, rateLimit, type RateLimitInfo } from './client';
export { ApiError } from './errors';
export { live, type LiveState } from './live';
export { session } from './session';
export { stats, mergeStats, usePollStats } from './stats';
export type * from './types';
