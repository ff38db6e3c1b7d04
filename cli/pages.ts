// Reading a paged list (page_token / next_page_token) to its end or to a limit.
import { CommandFailure } from './failure.js';

export interface Page<T> {
  items: T[];
  nextPageToken: string;
}

/** Every item, or the first `limit`; a server that hands back a token it gave before is refused, not followed forever. */
export async function pages<T>(
  limit: number | undefined,
  fetch: (pageSize: number, pageToken: string) => Promise<Page<T>>,
  maxPageSize = 1000,
): Promise<T[]> {
  const max = limit ?? Number.POSITIVE_INFINITY;
  const items: T[] = [];
  const seen = new Set<string>();
  let pageToken = '';
  for (;;) {
    const page = await fetch(Math.min(maxPageSize, max - items.length), pageToken);
    items.push(...page.items.slice(0, max - items.length));
    if (items.length >= max || !page.nextPageToken) return items;
    if (seen.has(page.nextPageToken)) throw new CommandFailure('the server repeated a page token; stopped reading its list');
    seen.add(page.nextPageToken);
    pageToken = page.nextPageToken;
  }
}
