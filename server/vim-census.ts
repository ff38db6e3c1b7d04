// The VIMs as Prometheus sees them (vimmon_vims, vimmon_vim_unreachable):
// read at scrape time in one short transaction whose statements PostgreSQL
// itself stops after statementTimeoutMs, so a slow database never holds a
// pooled connection for long. One sequential scan of the live rows: about
// 20 ms at 100,000 VIMs, every scrape interval.
import { maxUnreachableSeries, type VimCensus } from '../common/metrics.js';
import { typedSql, type Orm } from '../db/connection.js';

export async function readVimCensus(orm: Orm, statementTimeoutMs = 2_000): Promise<VimCensus> {
  return orm.em.fork().transactional(async (em) => {
    // Raw: a setting of this transaction, no table to type it against.
    await em.execute(`set local statement_timeout = ${Math.max(1, Math.round(statementTimeoutMs))}`);
    const db = typedSql(em);
    const counts = await db
      .selectFrom('vim')
      .select(['status', (eb) => eb.fn.countAll<string>().as('count')])
      .where('deleted_at', 'is', null)
      .groupBy('status')
      .execute();
    const byStatus = { pending: 0, reachable: 0, unreachable: 0 };
    for (const c of counts) {
      const key = c.status.toLowerCase();
      if (Object.hasOwn(byStatus, key)) byStatus[key as keyof typeof byStatus] = Number(c.count);
    }
    const unreachable =
      byStatus.unreachable === 0
        ? []
        : await db
            .selectFrom('vim')
            .select(['id', 'name'])
            .where('deleted_at', 'is', null)
            .where('status', '=', 'UNREACHABLE')
            // The longest unreachable first: past the bound, the series an alert has watched longest stay.
            .orderBy('status_changed_at')
            .orderBy('id')
            .limit(maxUnreachableSeries)
            .execute();
    return { byStatus, unreachable };
  });
}
