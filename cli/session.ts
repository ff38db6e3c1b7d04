// One run of a people command: its target, its printer, the SDK client (made
// on first use, closed at the end) and the wrapper that turns a failed call
// into the one line the person reads.
import { createVimmonClient, OptionError, type VimmonClient, type VimmonClientOptions } from '../client/src/index.js';
import { CommandFailure, describeCallError, UsageError } from './failure.js';
import { createPrinter, type CliIo, type OutputFormat, type Printer } from './output.js';
import { resolveTarget, type RoleName, type Target, type TargetFlags } from './target.js';

export interface GlobalFlags extends TargetFlags {
  output: OutputFormat;
}

export interface Session {
  io: CliIo;
  target: Target;
  out: Printer;
  /** Aborted by Ctrl-C or SIGTERM: watches end on it. */
  signal: AbortSignal;
  client(): VimmonClient;
  /** A client of its own for one address of a role (the caller closes it). */
  clientFor(role: RoleName, address: string): VimmonClient;
  /** Runs a call to `role`; a failure becomes a CommandFailure saying what failed. */
  call<T>(role: RoleName, what: string, run: (client: VimmonClient) => Promise<T>): Promise<T>;
  /** The address(es) of a role, for messages. */
  where(role: RoleName): string;
  close(): void;
}

/** A command's action: the session, its options, its positional arguments. */
export type Act<O, A extends unknown[] = []> = (session: Session, options: O, ...args: A) => Promise<void>;

/** Wraps an action for commander: global flags → session, closed whatever happens. */
export type Runner = <O, A extends unknown[] = []>(act: Act<O, A>) => (...commanderArgs: unknown[]) => Promise<void>;

/** The SDK's own checks of an address or a certificate are about the command line: exit 2. */
function clientOf(options: VimmonClientOptions): VimmonClient {
  try {
    return createVimmonClient(options);
  } catch (err) {
    if (err instanceof OptionError) throw new UsageError(err.message);
    throw err;
  }
}

export function createSession(io: CliIo, flags: GlobalFlags, signal: AbortSignal): Session {
  const target = resolveTarget(flags, io.env);
  let client: VimmonClient | undefined;
  const session: Session = {
    io,
    target,
    out: createPrinter(io, flags.output),
    signal,
    client: () => (client ??= clientOf(target.clientOptions)),
    clientFor: (role, address) => clientOf({ ...target.clientOptions, [role]: [address] }),
    where: (role) => target.addresses[role].join(','),
    async call(role, what, run) {
      try {
        return await run(session.client());
      } catch (err) {
        if (err instanceof CommandFailure || err instanceof UsageError) throw err;
        throw new CommandFailure(describeCallError(err, what, role, session.where(role)), { cause: err });
      }
    },
    close() {
      client?.close();
      client = undefined;
    },
  };
  return session;
}
