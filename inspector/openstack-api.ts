// One call to an OpenStack API as the inspector's Nova and Neutron clients make
// it: JSON in and out, a time limit per request, one more try with a fresh token
// after a 401 (Keystone may have revoked it), and every failure as the client's
// own error carrying the HTTP status (0: no answer) and whether a retry can help.
// The clients never retry otherwise: their callers decide.
import { KeystoneError, causeOf, errorMessage, isRetryableStatus, type KeystoneSession } from '../common/keystone.js';

export interface OpenStackApiOptions {
  /** The service as error messages name it: nova, neutron. */
  service: string;
  session: KeystoneSession;
  /** The client's error: NovaError, NeutronError. */
  fail: (message: string, status: number, retryable: boolean) => Error;
  fetch?: typeof fetch;
  /** Per HTTP request. */
  timeoutMs: number;
}

export interface ApiCall {
  body?: unknown;
  signal?: AbortSignal;
  /** Beyond Accept, Content-Type and X-Auth-Token (e.g. a microversion). */
  headers?: Record<string, string>;
}

export interface OpenStackApi {
  /** An authenticated call to root + path: its JSON answer, undefined for an empty body. */
  request<T>(method: string, root: string, path: string, call: ApiCall): Promise<T | undefined>;
  /** One exchange, with a token when given (a version document needs none). */
  send(method: string, url: string, call: ApiCall, token: string | undefined): Promise<Response>;
  readText(res: Response, signal?: AbortSignal): Promise<string>;
  /** A Keystone failure seen through this service: the same message and verdict, as the client's error. */
  fromKeystone(err: unknown): unknown;
}

export function createOpenStackApi(options: OpenStackApiOptions): OpenStackApi {
  const { service, session, fail, timeoutMs } = options;
  const doFetch = options.fetch ?? fetch;

  const fromKeystone = (err: unknown): unknown => (err instanceof KeystoneError ? fail(err.message, err.status, err.retryable) : err);

  const send = async (method: string, url: string, call: ApiCall, token: string | undefined): Promise<Response> => {
    const headers: Record<string, string> = { Accept: 'application/json', ...call.headers };
    if (token) headers['X-Auth-Token'] = token;
    if (call.body !== undefined) headers['Content-Type'] = 'application/json';
    const timeout = AbortSignal.timeout(timeoutMs);
    const signal = call.signal ? AbortSignal.any([call.signal, timeout]) : timeout;
    try {
      return await doFetch(url, { method, headers, body: call.body === undefined ? undefined : JSON.stringify(call.body), signal });
    } catch (err) {
      if (call.signal?.aborted) throw call.signal.reason;
      if (timeout.aborted) throw fail(`${service}: ${method} ${url}: no answer within ${timeoutMs} ms`, 0, true);
      throw fail(`${service}: ${method} ${url}: ${causeOf(err)}`, 0, true);
    }
  };

  const readText = async (res: Response, signal?: AbortSignal): Promise<string> => {
    try {
      return await res.text();
    } catch (err) {
      if (signal?.aborted) throw signal.reason;
      throw fail(`${service}: reading the answer: ${causeOf(err)}`, 0, true);
    }
  };

  const request = async <T>(method: string, root: string, path: string, call: ApiCall): Promise<T | undefined> => {
    const url = `${root}${path}`;
    for (let attempt = 0; ; attempt++) {
      let token: string;
      try {
        token = await session.token(call.signal);
      } catch (err) {
        throw fromKeystone(err);
      }
      const res = await send(method, url, call, token);
      const text = await readText(res, call.signal);
      if (res.status === 401 && attempt === 0) {
        session.invalidate(token);
        continue;
      }
      if (!res.ok) {
        throw fail(
          `${service}: ${method} ${path} answered ${res.status}: ${errorMessage(text) ?? res.statusText}`,
          res.status,
          isRetryableStatus(res.status),
        );
      }
      if (!text) return undefined;
      try {
        return JSON.parse(text) as T;
      } catch {
        throw fail(`${service}: ${method} ${path} answered ${res.status} with a body that is not JSON`, res.status, false);
      }
    }
  };

  return { request, send, readText, fromKeystone };
}
