// The people commands (`vimmon vim …`, `alarm …`, `event report`, `fault show`,
// `status`) as one commander program. Exit codes: 0 done, 1 a call or what it
// needed failed (one line on stderr), 2 the command line is wrong (commander's
// own errors included, with the command's usage).
import { Command, CommanderError, Option } from 'commander';
import { addAlarmCommands } from './alarm-commands.js';
import { addFaultCommands } from './fault-commands.js';
import { CommandFailure, oneLine, UsageError } from './failure.js';
import { outputFormats, type CliIo } from './output.js';
import { createSession, type Act, type GlobalFlags, type Runner } from './session.js';
import { addStatusCommand } from './status-command.js';
import { targetHelp } from './target.js';
import { addVimCommands } from './vim-commands.js';

export { peopleCommands } from './roles.js';

function buildProgram(io: CliIo, signal: AbortSignal): Command {
  const program = new Command('vimmon');
  program
    .description('Look after the VIMs and alarms of a vimmon mesh (the role commands: vimmon --help).')
    .exitOverride()
    .configureOutput({ writeOut: io.out, writeErr: io.err })
    .showHelpAfterError()
    .addOption(
      new Option('-o, --output <format>', 'table for people; json (one object per line) or yaml for programs')
        .choices(outputFormats)
        .default('table'),
    )
    .option('--server <addr>', 'the Tacker server(s), host:port[,host:port…]')
    .option('--inspector <addr>', 'the inspector')
    .option('--executor <addr>', 'the executor(s)')
    .option('--conductor <addr>', 'the conductor(s)')
    .option('--token <token>', 'bearer token (shows in ps: prefer VIMMON_TOKEN or --token-file)')
    .option('--token-file <file>', 'a file holding the bearer token')
    .option('--ca-file <file>', 'PEM CA the servers are verified against (TLS)')
    .option('--cert-file <file>', 'PEM client certificate (mutual TLS)')
    .option('--key-file <file>', "the client certificate's PEM key")
    .option('--tls', "TLS with the system's CAs")
    .option('--tls-server-name <name>', 'the name the server certificate must carry, if not the address')
    .option('--timeout <duration>', 'limit of each call, e.g. 500ms, 10s', '10s')
    .configureHelp({ showGlobalOptions: true })
    .addHelpText('afterAll', `\n${targetHelp}`);

  const run: Runner =
    <O, A extends unknown[]>(act: Act<O, A>) =>
    async (...commanderArgs: unknown[]) => {
      const command = commanderArgs.at(-1) as Command;
      const args = commanderArgs.slice(0, -2) as A;
      const flags = command.optsWithGlobals<GlobalFlags & O>();
      const session = createSession(io, flags, signal);
      try {
        await act(session, flags, ...args);
      } finally {
        session.close();
      }
    };

  addVimCommands(program, run);
  addAlarmCommands(program, run);
  addFaultCommands(program, run);
  addStatusCommand(program, run);
  return program;
}

/** Runs a people command; resolves to its exit code. */
export async function runCommand(argv: string[], io: CliIo, signal: AbortSignal = new AbortController().signal): Promise<number> {
  try {
    const program = buildProgram(io, signal);
    await program.parseAsync(argv, { from: 'user' });
    return 0;
  } catch (err) {
    if (err instanceof CommanderError) return err.exitCode === 0 ? 0 : 2; // commander printed it
    if (err instanceof UsageError) {
      io.err(`vimmon: ${oneLine(err.message)}\n`);
      return 2;
    }
    io.err(`vimmon: ${oneLine(err instanceof CommandFailure ? err.message : ((err as Error)?.message ?? String(err)))}\n`);
    return 1;
  }
}

/**
 * A people command run by this process: standard streams, the environment,
 * Ctrl-C and SIGTERM (the first ends a watch cleanly, a second exits at once).
 */
export async function runPeopleCommand(argv: string[]): Promise<number> {
  // grpc-js names an IP address as the TLS server name, and Node warns about it
  // (DEP0123) on stderr: a note for developers that would break the one-line errors.
  process.noDeprecation = true;
  const interrupted = new AbortController();
  const onSignal = (name: NodeJS.Signals) => {
    if (interrupted.signal.aborted) process.exit(name === 'SIGINT' ? 130 : 143);
    interrupted.abort();
  };
  process.on('SIGINT', onSignal).on('SIGTERM', onSignal);
  // A reader that went away (`| head`) ends the output, not with a stack trace.
  process.stdout.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code === 'EPIPE') process.exit(process.exitCode ?? 0);
  });
  try {
    return await runCommand(
      argv,
      {
        out: (text) => process.stdout.write(text),
        err: (text) => process.stderr.write(text),
        env: process.env,
        tty: process.stdout.isTTY === true,
        stdin: process.stdin,
      },
      interrupted.signal,
    );
  } finally {
    process.off('SIGINT', onSignal).off('SIGTERM', onSignal);
  }
}
