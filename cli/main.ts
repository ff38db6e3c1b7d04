// `vimmon`: the roles (`all`, `server`, …, run by cli/run-roles.ts), `token`, and
// the commands for people (cli/commands.ts). Dispatch only; each branch loads its
// own code, so `vimmon vim list` does not load MikroORM or any role.
import { peopleCommands, roleNames, type RoleName } from './roles.js';

const usage = `usage: vimmon [${['all', ...roleNames].join('|')}]

  all        every role in one process (the default)
  server     the Tacker server (vimmon.tacker.v1.VimService)
  conductor  a conductor (vimmon.conductor.v1.VimMonitorAction2Conductor)
  executor   an executor (vimmon.executor.v1.ExecutorService)
  inspector  the inspector (vimmon.inspector.v1.InspectorService, Doctor PUT /events)
  token      make a static bearer token (vimmon token --help)

Configuration is read from the environment; see README.md.

Commands for people, against a running mesh (each with --help):
  vim        register, list, show, update, deregister, watch VIMs; their events and audit trail
  alarm      watch and list alarms
  event      report a host fault (event report)
  fault      Doctor's profiler points (fault show)
  host       hosts known down, the VMs a fault affects, maintenance (host list|affected|maintenance)
  status     every role's health`;

async function main(argv: string[]): Promise<void> {
  const arg = argv[0] ?? 'all';
  // People commands (and global flags before one, `vimmon -o json vim list`) go to commander.
  const people = peopleCommands as readonly string[];
  if (
    people.includes(arg) ||
    (arg === 'help' && people.includes(argv[1] ?? '')) ||
    (arg.startsWith('-') && arg !== '-h' && arg !== '--help')
  ) {
    const { runPeopleCommand } = await import('./commands.js');
    process.exitCode = await runPeopleCommand(argv);
    return;
  }
  if (arg === '-h' || arg === '--help' || arg === 'help') {
    process.stdout.write(`${usage}\n`);
    return;
  }
  if (arg === 'token') {
    const { tokenCommand } = await import('./token.js');
    process.exitCode = await tokenCommand(argv.slice(1), (text) => process.stdout.write(text));
    return;
  }
  if (arg !== 'all' && !(roleNames as readonly string[]).includes(arg)) {
    process.stderr.write(`unknown role ${JSON.stringify(arg)}\n\n${usage}\n`);
    process.exitCode = 2;
    return;
  }
  const { runRoles } = await import('./run-roles.js');
  await runRoles(arg as 'all' | RoleName);
}

await main(process.argv.slice(2));
