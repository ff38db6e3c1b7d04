// The first words of the `vimmon` command line: the roles a process can run,
// and the commands for people (cli/commands.ts), kept here so that dispatching
// in cli/main.ts loads neither.
export const roleNames = ['server', 'conductor', 'executor', 'inspector'] as const;
export type RoleName = (typeof roleNames)[number];

/** The first words that are people commands (cli/main.ts sends these to cli/commands.ts). */
export const peopleCommands = ['vim', 'alarm', 'event', 'fault', 'host', 'status'] as const;
