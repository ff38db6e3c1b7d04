// OPNFV Doctor's inspector endpoint: `PUT /events` (Doctor's sample monitor)
// or `POST /events` (its collectd monitor) with Doctor's JSON, an array of
// events or a single one (other fields, such as the monitors' "id", ignored):
//   [{"time": "2016-04-12T08:00:00", "type": "compute.host.down",
//     "details": {"hostname": "compute-1", "status": "down",
//                 "monitor": "zabbix1", "monitor_event_id": "111"}}]
// The reply (202, with the counts) goes out as soon as the body is checked;
// the alarms and the Nova work follow it. `POST /maintenance` takes Doctor's
// maintenance alarm (doctor-maintenance.ts) and answers once it is stored.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { CallCredentials } from '../common/auth/authenticator.js';
import { createHttpEndpointServer, httpCredentials } from '../common/auth/http-credentials.js';
import { development, type Principal } from '../common/auth/principal.js';
import type { Tls } from '../common/tls.js';
import { splitHostPort, withPort } from '../common/address.js';
import {
  InvalidArgumentError,
  isDatabaseUnavailable,
  PermissionDeniedError,
  ResourceExhaustedError,
  UnauthenticatedError,
  UnavailableError,
} from '../common/errors.js';
import type { Logger } from '../common/logger.js';
import { parseMaintenanceAlarm } from './doctor-maintenance.js';
import { parseFaultEvent, type FaultEventInput, type ReportResult } from './fault.js';
import type { MaintenanceChange } from './maintenance.js';

/** An Aodh alarm notification is a few hundred bytes. */
const maxMaintenanceBodyBytes = 64 * 1024;

export interface DoctorHttpOptions {
  logger: Logger;
  report(events: FaultEventInput[]): Promise<ReportResult>;
  /** Larger bodies get 413. */
  maxBodyBytes?: number;
  /** The caller of `http:<METHOD> /events`, authorized (the gRPC policy's); unset: anyone. */
  authorize?(rule: string, credentials: CallCredentials): Promise<Principal>;
  /** HTTPS with this certificate (and client certificates verified against its CA when presented); unset: plain HTTP. */
  tls?: Tls;
  /** Doctor's POST /maintenance (doctor-maintenance.ts), by a caller of `http:POST /maintenance`; unset: 404. */
  maintenance?(change: MaintenanceChange, caller: Principal): Promise<{ changed: boolean }>;
}

export interface DoctorHttpServer {
  /** Binds host:port (port 0 picks one); resolves to the address bound. */
  listen(address: string): Promise<string>;
  close(): Promise<void>;
}

export function createDoctorHttpServer(options: DoctorHttpOptions): DoctorHttpServer {
  const { logger } = options;
  const maxBodyBytes = options.maxBodyBytes ?? 4 * 1024 * 1024;

  const onRequest = (req: IncomingMessage, res: ServerResponse) => {
    void handle(req, res).catch((err: unknown) => {
      logger.error('Doctor endpoint failed', { err });
      if (!res.headersSent) reply(res, 500, { error: 'internal error' });
    });
  };
  const tls = options.tls;
  const server = createHttpEndpointServer(tls, onRequest);

  /** The caller, allowed by the rule; or false, answered 401/403/503. */
  async function authorized(req: IncomingMessage, res: ServerResponse, rule = `http:${req.method} /events`): Promise<Principal | false> {
    if (!options.authorize) return development;
    try {
      return await options.authorize(rule, httpCredentials(req));
    } catch (err) {
      req.resume();
      if (err instanceof UnauthenticatedError) {
        res.setHeader('WWW-Authenticate', 'Bearer');
        reply(res, 401, { error: err.message });
      } else if (err instanceof PermissionDeniedError) reply(res, 403, { error: err.message });
      else if (err instanceof UnavailableError) reply(res, 503, { error: err.message });
      else throw err;
      return false;
    }
  }

  async function handle(req: IncomingMessage, res: ServerResponse) {
    const path = (req.url ?? '/').split('?')[0];
    if (path === '/maintenance' && options.maintenance) return handleMaintenance(req, res, options.maintenance);
    if (path !== '/events') {
      req.resume();
      return reply(res, 404, { error: `no such path ${JSON.stringify(path)}; Doctor events go to PUT or POST /events` });
    }
    // PUT as Doctor's sample monitor sends, POST as its collectd monitor does: the same body, checks and
    // answer; each method has its policy rule (http:PUT /events, http:POST /events).
    if (req.method !== 'PUT' && req.method !== 'POST') {
      req.resume();
      res.setHeader('Allow', 'PUT, POST');
      return reply(res, 405, { error: `method ${req.method} not allowed; use PUT or POST` });
    }
    if (!(await authorized(req, res))) return;
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

  /** Doctor's POST /maintenance; answers once the change is stored. */
  async function handleMaintenance(req: IncomingMessage, res: ServerResponse, apply: NonNullable<DoctorHttpOptions['maintenance']>) {
    if (req.method !== 'POST') {
      req.resume();
      res.setHeader('Allow', 'POST');
      return reply(res, 405, { error: `method ${req.method} not allowed; use POST` });
    }
    const caller = await authorized(req, res, 'http:POST /maintenance');
    if (!caller) return;
    const body = await readBody(req, maxMaintenanceBodyBytes);
    if (body === undefined) return reply(res, 413, { error: `body larger than ${maxMaintenanceBodyBytes} bytes` }, true);
    let change: MaintenanceChange;
    try {
      change = parseMaintenanceAlarm(body);
    } catch (err) {
      if (err instanceof InvalidArgumentError) return reply(res, 400, { error: err.message, field: err.field });
      throw err;
    }
    try {
      const { changed } = await apply(change, caller);
      return reply(res, 200, { host: change.host, state: change.inMaintenance ? 'IN_MAINTENANCE' : 'MAINTENANCE_COMPLETE', changed });
    } catch (err) {
      if (err instanceof ResourceExhaustedError) return reply(res, 429, { error: err.message });
      if (err instanceof UnavailableError || isDatabaseUnavailable(err)) return reply(res, 503, { error: 'unavailable; retry' });
      throw err;
    }
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
      (field) => (field === 'type' || field === 'time' ? name(field) : name(`details.${field}`)),
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

/**
 * ISO 8601; Doctor's monitors send UTC without a zone, Python's
 * `datetime.isoformat()` ("2016-04-12T08:00:00.123456"), or with one. Only a
 * real calendar date in years 0001 to 9999 (a Timestamp's range): JavaScript's
 * Date would take year 0000 and roll 2026-02-30 over into March.
 */
const isoTime = /^(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d{1,9}))?)?(Z|[+-]\d{2}:?\d{2})?$/i;

function parseTime(v: unknown, field: string): Date | undefined {
  if (v === undefined || v === null || v === '') return undefined;
  if (typeof v !== 'string') throw new InvalidArgumentError(field, 'expected an ISO 8601 timestamp');
  const bad = () => new InvalidArgumentError(field, `not an ISO 8601 timestamp in years 0001 to 9999: ${JSON.stringify(v.slice(0, 64))}`);
  const m = isoTime.exec(v);
  if (!m) throw bad();
  const [year, month, day, hour, minute, second] = [m[1], m[2], m[3], m[4], m[5], m[6] ?? '0'].map(Number) as [
    number,
    number,
    number,
    number,
    number,
    number,
  ];
  const ms = m[7] ? Number(m[7].padEnd(3, '0').slice(0, 3)) : 0;
  if (year < 1 || month < 1 || month > 12 || day < 1 || day > daysIn(year, month) || hour > 23 || minute > 59 || second > 59) throw bad();
  let offsetMin = 0;
  const zone = m[8];
  if (zone && zone.toUpperCase() !== 'Z') {
    const digits = zone.replace(':', '');
    const oh = Number(digits.slice(1, 3));
    const om = Number(digits.slice(3, 5));
    if (oh > 23 || om > 59) throw bad();
    offsetMin = (digits[0] === '-' ? -1 : 1) * (oh * 60 + om);
  }
  const d = new Date(0);
  d.setUTCFullYear(year, month - 1, day); // not Date.UTC: it takes years 0-99 as 1900-1999
  d.setUTCHours(hour, minute, second, ms);
  d.setTime(d.getTime() - offsetMin * 60_000);
  // The zone can still move a time at either end out of the years 0001-9999.
  if (d.getUTCFullYear() < 1 || d.getUTCFullYear() > 9999) throw bad();
  return d;
}

function daysIn(year: number, month: number): number {
  if (month !== 2) return [31, 0, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][month - 1]!;
  return (year % 4 === 0 && year % 100 !== 0) || year % 400 === 0 ? 29 : 28;
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
