// Names for the generated schema types (schema.d.ts comes from docs/openapi.yaml: `npm run gen:api`).
import type { components, operations } from './schema';

type Schemas = components['schemas'];

export type User = Schemas['User'];
export type UserWithQuota = Schemas['UserWithQuota'];
export type Session = Schemas['Session'];
export type RegisterRequest = Schemas['RegisterRequest'];
export type LoginRequest = Schemas['LoginRequest'];
export type Poll = Schemas['Poll'];
export type PollView = Schemas['PollView'];
export type NewPoll = Omit<Schemas['NewPoll'], 'userId'>;
export type FeedPage = Schemas['FeedPage'];
export type HotPolls = Schemas['HotPolls'];
/** GET /api/users/me/polls and /api/users/me/votes: one page of the caller's lists. */
export type MyPollsPage = Schemas['MyPollsPage'];
export type MyPollsQuery = NonNullable<operations['myPolls']['parameters']['query']>;
export type Stats = Schemas['Stats'];
export type VoteResult = Schemas['VoteResult'];
export type SkipResult = Schemas['SkipResult'];
export type ErrorBody = Schemas['Error'];
export type FieldError = Schemas['FieldError'];
export type WsClientMessage = Schemas['WsClientMessage'];
export type WsServerMessage = Schemas['WsServerMessage'];
export type FeedQuery = Pick<NonNullable<operations['feed']['parameters']['query']>, 'tag' | 'q' | 'limit' | 'cursor'>;

export type WsTicket = operations['issueWsTicket']['responses'][201]['content']['application/json'];
