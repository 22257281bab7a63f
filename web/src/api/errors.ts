import type { ErrorBody, FieldError } from './types';

/** Codes the client produces itself, for failures that never reached the API. */
export type ClientErrorCode = 'network_error' | 'bad_response';

/** Every failed call: the API's error body, or a network failure, as one typed value. */
export class ApiError extends Error {
  override readonly name = 'ApiError';

  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly details: readonly FieldError[] = [],
    /** Seconds from Retry-After (429, some 503), or null. */
    readonly retryAfter: number | null = null,
  ) {
    super(message);
  }

  static fromBody(status: number, body: unknown, retryAfter: number | null): ApiError {
    const error = isErrorBody(body) ? body.error : null;
    if (!error) {
      return new ApiError(status, status >= 500 ? 'internal_error' : 'bad_response', `HTTP ${status}`, [], retryAfter);
    }
    return new ApiError(status, error.code, error.message, error.details ?? [], retryAfter);
  }

  get isServerError(): boolean {
    return this.status >= 500;
  }

  /** `details` as field → first message, e.g. {"title": "...", "options[1]": "..."}. */
  fieldErrors(): Record<string, string> {
    const out: Record<string, string> = {};
    for (const { field, message } of this.details) {
      out[field] ??= message;
    }
    return out;
  }
}

function isErrorBody(body: unknown): body is ErrorBody {
  if (typeof body !== 'object' || body === null || !('error' in body)) {
    return false;
  }
  const error = (body as { error: unknown }).error;
  return (
    typeof error === 'object' &&
    error !== null &&
    typeof (error as { code?: unknown }).code === 'string' &&
    typeof (error as { message?: unknown }).message === 'string'
  );
}
