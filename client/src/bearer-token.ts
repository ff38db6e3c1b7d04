// The caller's token on every call, as `authorization: Bearer …`. A middleware
// rather than default metadata: a call that passes its own metadata keeps the
// token, and a token function is asked again for every attempt, so a refreshed
// token is used by the next retry or reconnect.
import { Metadata, type ClientMiddleware } from 'nice-grpc-common';
import { OptionError } from './option-error.js';

export type TokenSource = string | (() => string | Promise<string>);

// What an HTTP/2 header value may hold, and a token never needs more than this.
const tokenShape = /^[\x21-\x7e]{1,8192}$/;

export function checkToken(token: unknown, where = 'token'): string {
  if (typeof token !== 'string' || !tokenShape.test(token)) {
    throw new OptionError(where, 'must be 1 to 8192 printable ASCII characters without spaces (the token alone, without "Bearer")');
  }
  return token;
}

export function bearerTokenMiddleware(source: TokenSource): ClientMiddleware {
  const fixed = typeof source === 'string' ? checkToken(source) : undefined;
  if (fixed === undefined && typeof source !== 'function') throw new OptionError('token', 'must be a string or a function returning one');
  return async function* bearerToken(call, options) {
    const token = fixed ?? checkToken(await (source as () => string | Promise<string>)(), 'token (from the token function)');
    const metadata = Metadata(options.metadata);
    metadata.set('authorization', `Bearer ${token}`);
    return yield* call.next(call.request, { ...options, metadata });
  };
}
