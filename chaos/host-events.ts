// Host faults the suite reports to the inspector at each fault's injection
// (down) and heal (up), in turn through Doctor's PUT /events and the gRPC
// ReportEvents, so that alarms flow while the mesh is under faults.
import { setTimeout as sleep } from 'node:timers/promises';
import type { VimmonClient } from '../client/src/index.js';

export interface HostEvents {
  send(status: 'down' | 'up'): Promise<void>;
  readonly counts: { sent: number; failed: number; failures: string[] };
}

/** Sends host events to the inspector in turn through Doctor's PUT /events and ReportEvents. */
export function hostEvents(inspectorHttp: string, client: VimmonClient, hosts: readonly string[]): HostEvents {
  let n = 0;
  const counts = { sent: 0, failed: 0, failures: [] as string[] };
  const send = async (status: 'down' | 'up') => {
    const id = n++;
    // A down and its up go to the same host by the same path.
    const pair = Math.floor(id / 2);
    const hostname = hosts[pair % hosts.length]!;
    const eventId = `chaos-${id}`;
    const deliver = async () => {
      if (pair % 2 === 0) {
        const res = await fetch(`${inspectorHttp}/events`, {
          method: 'PUT',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify([
            {
              time: new Date().toISOString(),
              type: 'compute.host.down',
              details: { hostname, status, monitor: 'chaos', monitor_event_id: eventId },
            },
          ]),
          signal: AbortSignal.timeout(5_000),
        });
        if (res.status !== 202) throw new Error(`PUT /events answered ${res.status}`);
      } else {
        await client.inspector.reportEvents(
          { events: [{ time: new Date(), type: 'compute.host.down', hostname, status, monitor: 'chaos', monitorEventId: eventId }] },
          { deadline: new Date(Date.now() + 5_000) },
        );
      }
    };
    // As a monitor would: a few tries, so that an "up" refused while a role or the database restarts still lands.
    for (let attempt = 1; ; attempt++) {
      try {
        await deliver();
        counts.sent++;
        return;
      } catch (err) {
        if (attempt < 6) {
          await sleep(1_000);
          continue;
        }
        // The inspector is the one killed, or the database is down: counted, with the first few reasons.
        counts.failed++;
        if (counts.failures.length < 10) counts.failures.push(`${hostname} ${status}: ${String(err).slice(0, 200)}`);
        return;
      }
    }
  };
  return { send, counts };
}
