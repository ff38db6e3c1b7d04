// The poison-row incident, replayed: one event whose time PostgreSQL refused
// stopped the alarm store for good (600,001 alarms pending, 2.76 GB, the alarms
// sent since lost at restart). Here, against a real inspector on a scratch
// database:
//   1. the two attack requests of the incident (ReportEvents with time
//      seconds -99999999999, PUT /events with "0000-01-01T00:00:00"), whose
//      answers are recorded (both are now refused at the edge);
//   2. a row the database itself refuses, among many good ones: the scratch
//      database gets a CHECK that rejects one host's alarm, and that host's
//      "down" is reported in the middle of BENCH_EVENTS (20,000) host-down
//      events sent by BENCH_CONCURRENCY (8) monitors, 100 events a request;
//   3. then: how long until every good alarm is stored, how many are pending
//      at the end, what was quarantined, the inspector's RSS; and a restart of
//      the inspector on the same database, which must know every host down
//      and raise nothing again.
//
//   npm run -s bench:poison      (DATABASE_URL, else postgres://postgres@127.0.0.1:5432/postgres)
import { randomUUID } from 'node:crypto';
import { createChannel, createClient, ClientError, Status } from 'nice-grpc';
import { createLogger } from '../common/logger.js';
import { openDatabase } from '../db/connection.js';
import { InspectorServiceDefinition } from '../gen/vimmon/inspector/v1/inspector_service.js';
import { startInspector } from '../inspector/main.js';
import { createScratchDatabase } from '../test/support/scratch-database.js';

const events = Number(process.env.BENCH_EVENTS ?? 20_000);
const concurrency = Number(process.env.BENCH_CONCURRENCY ?? 8);
const perRequest = 100;
const poisonHost = 'compute-poison';

async function main() {
  const base = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
  const scratch = await createScratchDatabase(base, 'vimmon_bench_poison');
  const orm = await openDatabase({ url: scratch.url });
  const logger = createLogger({ level: (process.env.VIMMON_LOG_LEVEL as 'info') ?? 'silent' });
  const start = () =>
    startInspector({
      logger,
      orm,
      databaseUrl: scratch.url,
      address: '127.0.0.1:0',
      httpAddress: '127.0.0.1:0',
      env: {},
      resyncIntervalMs: 600_000,
    });
  try {
    let inspector = await start();
    let channel = createChannel(inspector.address);
    let client = createClient(InspectorServiceDefinition, channel);
    const codeOf = async (p: Promise<unknown>) =>
      p.then(
        () => 'OK',
        (err: unknown) => (err instanceof ClientError ? Status[err.code] : String(err)),
      );

    // 1. The incident's two requests.
    const grpcAttack = await codeOf(
      client.reportEvents({
        events: [{ type: 'compute.host.down', hostname: 'h-attack', status: 'down', time: new Date(-99_999_999_999 * 1000) }],
      }),
    );
    const httpAttack = await fetch(`http://${inspector.httpAddress}/events`, {
      method: 'PUT',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify([{ time: '0000-01-01T00:00:00', type: 'compute.host.down', details: { hostname: 'h-attack', status: 'down' } }]),
    });
    const httpAttackBody = await httpAttack.text();

    // 2. A row the database refuses, in the middle of a stream of good ones.
    await orm.em.fork().getConnection().execute(`alter table alarm add constraint bench_poison check (host <> '${poisonHost}')`);
    const hosts = Array.from({ length: events }, (_, i) => `compute-${i}`);
    hosts.splice(Math.floor(events / 2), 0, poisonHost);
    const batches: string[][] = [];
    for (let i = 0; i < hosts.length; i += perRequest) batches.push(hosts.slice(i, i + perRequest));
    const sentAt = performance.now();
    let next = 0;
    const refused: Record<string, number> = {};
    await Promise.all(
      Array.from({ length: concurrency }, async () => {
        for (let b = next++; b < batches.length; b = next++) {
          const code = await codeOf(
            client.reportEvents({
              events: batches[b]!.map((hostname) => ({
                type: 'compute.host.down',
                hostname,
                status: 'down',
                monitor: 'bench',
                monitorEventId: randomUUID(),
                time: new Date(),
              })),
            }),
          );
          if (code !== 'OK') refused[code] = (refused[code] ?? 0) + 1;
        }
      }),
    );
    const sentMs = performance.now() - sentAt;
    let status = await client.getStatus({});
    while (status.alarmsPendingStore > 0 && performance.now() - sentAt < 120_000) {
      await new Promise((r) => setTimeout(r, 50));
      status = await client.getStatus({});
    }
    const allStoredMs = performance.now() - sentAt;
    const sql = orm.em.fork().getConnection();
    const [stored] = await sql.execute(`select count(*)::int as n from alarm where host like 'compute-%'`);
    const [quarantined] = await sql.execute(`select count(*)::int as n, min(error) as error from alarm_quarantine`);
    const rssMiB = Math.round((process.memoryUsage().rss / 2 ** 20) * 10) / 10;

    // 3. A restart on the same database: every host known down, nothing raised again.
    channel.close();
    await inspector.stop();
    inspector = await start();
    channel = createChannel(inspector.address);
    client = createClient(InspectorServiceDefinition, channel);
    const again = await client.reportEvents({ events: [{ type: 'compute.host.down', hostname: 'compute-1', status: 'down' }] });
    const afterRestart = await client.getStatus({});
    channel.close();
    await inspector.stop();

    console.log(
      JSON.stringify(
        {
          benchmark: 'poison-row',
          command: 'npm run -s bench:poison',
          settings: { events, concurrency, eventsPerRequest: perRequest },
          attack: {
            reportEventsTimeSecondsMinus99999999999: grpcAttack,
            putEventsYear0000: { status: httpAttack.status, body: JSON.parse(httpAttackBody) },
          },
          refusedRequests: refused,
          sendMs: Math.round(sentMs),
          allStoredMs: Math.round(allStoredMs),
          pendingAtEnd: status.alarmsPendingStore,
          goodAlarmsStored: (stored as { n: number }).n,
          goodAlarmsExpected: events,
          quarantined: (quarantined as { n: number }).n,
          quarantineError: (quarantined as { error: string }).error,
          alarmsQuarantinedInStatus: Number(status.alarmsQuarantined),
          inspectorProcessRssMiB: rssMiB,
          afterRestart: {
            hostsDownTotal: afterRestart.hostsDownTotal,
            repeatedDownIsDuplicate: again.duplicates === 1,
            alarmsQuarantined: Number(afterRestart.alarmsQuarantined),
          },
        },
        null,
        2,
      ),
    );
  } finally {
    await orm.close(true);
    await scratch.drop();
  }
}

await main();
