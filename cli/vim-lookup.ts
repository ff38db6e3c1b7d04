// A VIM named on the command line by id or by name, and the pages of ListVims.
// An exact id wins; else the one live VIM of that name (names are unique among
// live VIMs, but a listing is what the caller may see, so two are reported, not guessed).
import { Status } from 'nice-grpc';
import { isUuid } from '../common/uuid.js';
import type { VimStatus } from '../gen/vimmon/common/v1/status.js';
import type { Vim } from '../gen/vimmon/tacker/v1/vim_service.js';
import { CommandFailure, grpcCode } from './failure.js';
import type { Session } from './session.js';

const pageSize = 500;

/** Every VIM the caller may see (of one status), page by page, at most `limit`. */
export async function* allVims(s: Session, options: { status?: VimStatus; limit?: number } = {}): AsyncGenerator<Vim> {
  const limit = options.limit ?? Number.POSITIVE_INFINITY;
  let pageToken = '';
  let count = 0;
  const seen = new Set<string>();
  do {
    const page = await s.call('server', 'cannot list VIMs', (c) =>
      c.server.listVims({ pageSize: Math.min(pageSize, limit - count), pageToken, status: options.status }),
    );
    for (const vim of page.vims) {
      yield vim;
      if (++count >= limit) return;
    }
    // A server that hands back a token it gave before would page forever.
    if (page.nextPageToken && seen.has(page.nextPageToken)) throw new CommandFailure('cannot list VIMs: the server repeated a page token');
    seen.add(page.nextPageToken);
    pageToken = page.nextPageToken;
  } while (pageToken);
}

export interface FoundVim {
  id: string;
  /** Undefined when only the id is known (a deregistered VIM's history). */
  vim?: Vim;
}

/**
 * The VIM `ref` names. `gone`: an id that no live VIM has is still taken, for
 * what is kept after deregistration (its events).
 */
export async function findVim(s: Session, ref: string, options: { gone?: boolean } = {}): Promise<FoundVim> {
  let byIdError: unknown;
  if (isUuid(ref)) {
    try {
      const { vim } = await s.client().server.getVim({ id: ref });
      if (vim) return { id: vim.id, vim };
    } catch (err) {
      const code = grpcCode(err);
      // PERMISSION_DENIED comes whether or not it exists; a VIM may also be named like an id.
      if (code !== Status.NOT_FOUND && code !== Status.PERMISSION_DENIED) {
        return s.call('server', `cannot get VIM ${ref}`, () => Promise.reject(err));
      }
      byIdError = err;
    }
  }
  const named: Vim[] = [];
  for await (const vim of allVims(s)) if (vim.name === ref) named.push(vim);
  if (named.length === 1) return { id: named[0]!.id, vim: named[0]! };
  if (named.length > 1)
    throw new CommandFailure(
      `${named.length} VIMs are named ${JSON.stringify(ref)}: name one by id (${named.map((v) => v.id).join(', ')})`,
    );
  if (byIdError && grpcCode(byIdError) === Status.NOT_FOUND && options.gone) return { id: ref.toLowerCase() };
  if (byIdError && grpcCode(byIdError) === Status.PERMISSION_DENIED) {
    return s.call('server', `cannot get VIM ${ref}`, () => Promise.reject(byIdError));
  }
  throw new CommandFailure(`no VIM with the id or name ${JSON.stringify(ref)}`);
}
