// How a people command fails: one line on stderr, `vimmon: <what failed>: <code> <details>`,
// exit 1 for a call that failed and 2 for a command line that cannot be run.
// Never a stack trace: the person needs what failed and why, not where.
import { Status } from 'nice-grpc';

/** The command line is wrong (a flag, a value, a key): exit 2. */
export class UsageError extends Error {
  override name = 'UsageError';
}

/** Something the command needed failed (a call, a file, a VIM not found): exit 1. */
export class CommandFailure extends Error {
  override name = 'CommandFailure';
}

interface GrpcLikeError {
  code: number;
  details: string;
}

function isGrpcError(err: unknown): err is GrpcLikeError {
  return typeof err === 'object' && err !== null && typeof (err as GrpcLikeError).code === 'number' && 'details' in err;
}

/** The code of a gRPC error, or undefined for anything else. */
export function grpcCode(err: unknown): Status | undefined {
  return isGrpcError(err) ? err.code : undefined;
}

// What grpc-js says when no connection could be made (refused, no route, DNS,
// TLS handshake), as opposed to a server that answered UNAVAILABLE itself.
const notConnected =
  /No connection established|ECONNREFUSED|ECONNRESET|EHOSTUNREACH|ENETUNREACH|ETIMEDOUT|ENOTFOUND|EAI_AGAIN|Name resolution failed|failed to connect|Connection dropped|handshake|certificate|ssl|tls/i;

/** One line: newlines and runs of blanks of a peer's message folded, control characters dropped. */
export function oneLine(text: string): string {
  return text
    .replace(/[\u0000-\u0008\u000e-\u001f\u007f-\u009f]/g, '')
    .replace(/\s+/g, ' ')
    .trim();
}

/**
 * grpc-js nests its connection errors ("round_robin: No connection established.
 * Last error: … Last error: Error: connect ECONNREFUSED 127.0.0.1:1. Resolution
 * note: "): the innermost is the one that says what happened.
 */
function innermost(details: string): string {
  const last = details.split('Last error: ').at(-1)!;
  const cleaned = last
    .replace(/^Error: /, '')
    .replace(/\.?\s*Resolution note:.*$/, '')
    .trim();
  return cleaned || details;
}

/** "UNAVAILABLE connect ECONNREFUSED 127.0.0.1:1", "NOT_FOUND vim … not found"; a message for anything else. */
export function callErrorText(err: unknown): string {
  if (!isGrpcError(err)) return oneLine((err as Error)?.message ?? String(err));
  const code = Status[err.code] ?? String(err.code);
  let details = oneLine(err.details ?? '');
  if (notConnected.test(details)) details = innermost(details);
  return details ? `${code} ${details}` : code;
}

/** Nothing answered at the address (as opposed to a server answering with an error). */
export function isNotConnected(err: unknown): boolean {
  return (
    isGrpcError(err) && (err.code === Status.UNAVAILABLE || err.code === Status.DEADLINE_EXCEEDED) && notConnected.test(err.details ?? '')
  );
}

/**
 * `what` failed because of err: "cannot reach the server at 127.0.0.1:50051:
 * UNAVAILABLE connect ECONNREFUSED 127.0.0.1:50051" when nothing answered
 * there, else "<what>: NOT_FOUND vim … not found".
 */
export function describeCallError(err: unknown, what: string, role: string, address: string): string {
  if (isNotConnected(err)) return `cannot reach the ${role} at ${address}: ${callErrorText(err)}`;
  return `${what}: ${callErrorText(err)}`;
}
