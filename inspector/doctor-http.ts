// OPNFV Doctor's inspector endpoint: `PUT /events` with Doctor's JSON, an
// array of events or a single one:
//   [{"time": "2016-04-12T08:00:00", "type": "compute.host.down",
//     "details": {"hostname": "compute-1", "status": "down",
//                 "monitor": "zabbix1", "monitor_event_id": "111"}}]
// The reply (202, with the counts) goes out as soon as the body is checked;
// the alarms and the Nova work follow it.
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { splitHostPort, withPort } from '../common/address.js';
import { InvalidArgumentError } from '../common/errors.js';
import type { Logger } from '../common/logger.js';
import { parseFaultEvent, type FaultEventInput, type ReportResult } from './fault.js';

export interface DoctorHttpOptions {
  logger: Logger;
  report(events: FaultEventInput[]): Promise<ReportResult>;
  /** Larger bodies get 413. */
  maxBodyBytes?: number;
}

export interface DoctorHttpServer {
  /** Binds host:port (port 0 picks one); resolves to the address bound. */
  listen(address: string): Promise<string>;
  close(): Promise<void>;
}

export function createDoctorHttpServer(options: DoctorHttpOptions): DoctorHttpServer {
  const { logger } = options;
  const maxBodyBytes = options.maxBodyBytes ?? 4 * 1024 * 1024;

  const server = createServer((req, res) => {
    void handle(req, res).catch((err: unknown) => {
      logger.error('Doctor endpoint failed', { err });
      if (!res.headersSent) reply(res, 500, { error: 'internal error' });
    });
  });

  async function handle(req: IncomingMessage, res: ServerResponse) {
    const path = (req.url ?? '/').split('?')[0];
    if (path !== '/events') {
      req.resume();
      return reply(res, 404, { error: `no such path ${JSON.stringify(path)}; Doctor events go to PUT /events` });
    }
    if (req.method !== 'PUT') {
      req.resume();
      res.setHeader('Allow', 'PUT');
      return reply(res, 405, { error: `method ${req.method} not allowed; use PUT` });
    }
    const body = await readBody(req, maxBodyBytes);
    if (body === undefined) return reply(res, 413, { error: `body larger than ${maxBodyBytes} bytes` }, true);
    let events: FaultEventInput[];
    try {
      events = parseDoctorBody(body);
    } catch (err) {
      if (err instanceof InvalidArgumentError) return reply(res, 400, { error: err.message, field: err.field });
      throw err;
    }
    const accepted = events.filter((e) => e.kind === 'host').length;
    reply(res, 202, { accepted, ignored: events.length - accepted });
    // After the reply is written: the monitor never waits for alarms or Nova.
    options.report(events).catch((err: unknown) => logger.error('Doctor events not handled', { err, events: events.length }));
  }

  return {
    listen(address) {
      const { host, port } = splitHostPort(address);
      return new Promise((resolve, reject) => {
        server.once('error', reject);
        server.listen(port, host, () => {
          server.off('error', reject);
          resolve(withPort(address, (server.address() as { port: number }).port));
        });
      });
    },
    close() {
      return new Promise((resolve) => {
        if (!server.listening) return resolve();
        server.close(() => resolve());
        server.closeIdleConnections();
      });
    },
  };
}

/** Doctor's body → events; throws InvalidArgumentError naming the offending field. */
export function parseDoctorBody(body: string): FaultEventInput[] {
  let json: unknown;
  try {
    json = JSON.parse(body);
  } catch (err) {
    throw new InvalidArgumentError('body', `not JSON: ${(err as Error).message}`);
  }
  const single = !Array.isArray(json);
  const items: unknown[] = single ? [json] : (json as unknown[]);
  if (items.length === 0) throw new InvalidArgumentError('body', 'an empty array: at least one event');
  if (items.length > 10_000) throw new InvalidArgumentError('body', 'at most 10000 events');
  return items.map((item, i) => {
    const at = single ? '' : `[${i}]`;
    const name = (field: string) => (at ? `${at}.${field}` : field);
    if (!isObject(item)) throw new InvalidArgumentError(at || 'body', 'expected an event object');
    const details = item.details ?? {};
    if (!isObject(details)) throw new InvalidArgumentError(name('details'), 'expected an object');
    return parseFaultEvent(
      {
        time: parseTime(item.time, name('time')),
        type: text(item.type, name('type')),
        hostname: text(details.hostname, name('details.hostname')),
        status: text(details.status, name('details.status')),
        monitor: text(details.monitor, name('details.monitor')),
        monitorEventId: text(details.monitor_event_id, name('details.monitor_event_id')),
        source: text(details.source ?? item.source, name('details.source')),
        cause: text(details.cause ?? item.cause, name('details.cause')),
        severity: text(details.severity ?? item.severity, name('details.severity')),
      },
      (field) => (field === 'type' ? name('type') : name(`details.${field}`)),
    );
  });
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function text(v: unknown, field: string): string {
  if (v === undefined || v === null) return '';
  if (typeof v === 'string') return v;
  if (typeof v === 'number') return String(v);
  throw new InvalidArgumentError(field, 'expected a string');
}

/** ISO 8601; Doctor's monitors send UTC without a zone ("2016-04-12T08:00:00.123"). */
function parseTime(v: unknown, field: string): Date | undefined {
  if (v === undefined || v === null || v === '') return undefined;
  if (typeof v !== 'string') throw new InvalidArgumentError(field, 'expected an ISO 8601 timestamp');
  const zoned = /(Z|[+-]\d{2}:?\d{2})$/i.test(v) ? v : `${v}Z`;
  const d = new Date(zoned);
  if (Number.isNaN(d.getTime()) || !/^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}/.test(v)) {
    throw new InvalidArgumentError(field, `not an ISO 8601 timestamp: ${JSON.stringify(v)}`);
  }
  return d;
}

function readBody(req: IncomingMessage, limit: number): Promise<string | undefined> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let tooLarge = false;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) tooLarge = true;
      else chunks.push(chunk);
    });
    req.on('end', () => resolve(tooLarge ? undefined : Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

function reply(res: ServerResponse, status: number, body: unknown, close = false) {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'Content-Type': 'application/json',
    'Content-Length': Buffer.byteLength(text),
    ...(close ? { Connection: 'close' } : {}),
  });
  res.end(text);
}
