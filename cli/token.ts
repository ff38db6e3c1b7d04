// `vimmon token new NAME --roles … [--projects …]`: a fresh static token and
// the entry for VIMMON_AUTH_TOKENS_FILE (only its SHA-256 is kept there);
// `vimmon token hash` reads a token on stdin and prints its SHA-256.
import { parseArgs } from 'node:util';
import { stringify } from 'yaml';
import { hashToken, newToken, parseStaticTokens } from '../common/auth/static-tokens.js';

export const tokenUsage = `usage: vimmon token new NAME --roles ROLE[,ROLE…] [--projects PROJECT[,PROJECT…]]
       vimmon token hash < token-file

  new   prints a new token on the first line (hand it to the client; it is not
        kept anywhere) and, after it, the entry to add to VIMMON_AUTH_TOKENS_FILE
  hash  prints the SHA-256 of the token read on standard input

Roles: admin, member, reader (in --projects), monitor, service:server,
service:conductor, service:executor, service:inspector, service:monitor.`;

export async function tokenCommand(argv: string[], out: (s: string) => void): Promise<number> {
  const [verb, ...rest] = argv;
  if (verb === 'hash') {
    const chunks: Buffer[] = [];
    for await (const c of process.stdin) chunks.push(c as Buffer);
    const token = Buffer.concat(chunks).toString('utf8').trim();
    if (!token) {
      out(`vimmon token hash: no token on standard input\n`);
      return 2;
    }
    out(`${hashToken(token)}\n`);
    return 0;
  }
  if (verb !== 'new') {
    out(`${tokenUsage}\n`);
    return verb === '-h' || verb === '--help' ? 0 : 2;
  }
  let parsed: { positionals: string[]; values: { roles?: string; projects?: string } };
  try {
    parsed = parseArgs({ args: rest, allowPositionals: true, options: { roles: { type: 'string' }, projects: { type: 'string' } } });
  } catch (err) {
    out(`vimmon token new: ${(err as Error).message}\n\n${tokenUsage}\n`);
    return 2;
  }
  const name = parsed.positionals[0];
  const list = (v: string | undefined) =>
    (v ?? '')
      .split(',')
      .map((x) => x.trim())
      .filter(Boolean);
  const token = newToken();
  const entry = { name, sha256: hashToken(token), roles: list(parsed.values.roles), projects: list(parsed.values.projects) };
  try {
    // The same checks the roles make when they load the file.
    parseStaticTokens(stringify([entry]), 'vimmon token new');
  } catch (err) {
    out(`${(err as Error).message.replace(/^vimmon token new: tokens\[0\]\./, 'vimmon token new: ')}\n`);
    return 2;
  }
  out(`${token}\n${stringify([entry])}`);
  return 0;
}
