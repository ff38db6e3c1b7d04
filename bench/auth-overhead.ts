// What authentication and authorization cost the conductor, measured in one run
// on this machine, side by side:
//
//   npm run -s bench:auth              (DATABASE_URL, default postgres://postgres@127.0.0.1:5432/postgres)
//
// 1. UpdateVim heartbeats over BENCH_VIMS (10000) rows of a fresh database, as
//    bench/conductor-throughput.ts drives them (same load generator, same CPU
//    accounting, conductor and load generator in processes of their own), in
//    three configurations:
//      plaintext   no TLS, no `auth` (development mode)
//      mtls        TLS with client certificates required (conductor certificate
//                  + mesh CA), no `auth`; the load generator presents the
//                  executor's certificate
//      mtlsAuthz   the same TLS and createAuth({ mode: 'enforced' }) with the
//                  default policy: UpdateVim needs service:executor, which the
//                  executor certificate's SPIFFE id gives
//    Certificates come from deploy/make-certs.sh (test/support/certificates.ts),
//    made once; the children get their paths through the environment.
// 2. auth.authorize() in this process, BENCH_AUTHORIZE_CALLS (100000) times per
//    credential after one warm-up call: a Keystone token (the OpenStack double's
//    Keystone; the warm-up validates it, the loop hits the cache), a static token,
//    a SPIFFE certificate identity; with the Keystone validations made during
//    each loop (0 expected: the cache re-checks after 30 s). Before any loop,
//    BENCH_AUTHORIZE_WARMUP_CALLS (1000) untimed calls of each credential let V8
//    compile the shared path, so the first credential timed is not the one
//    that pays for it.
// BENCH_DURATION_MS (5000), BENCH_WARMUP_MS (1000), BENCH_CONCURRENCY (64),
// BENCH_CHANNELS (1); QUICK=1 shortens to 2000 ms and 2000 VIMs.
// JSON on stdout, progress on stderr.
import { readFileSync } from 'node:fs';
import os from 'node:os';
import { fileURLToPath } from 'node:url';
import { ChannelCredentials, ClientError, createChannel, createClient, Status } from 'nice-grpc';
import { VimStatus } from '../gen/vimmon/common/v1/status.js';
import { VimMonitorAction2ConductorDefinition } from '../gen/vimmon/conductor/v1/conductor.js';
import { createAuth, type Auth, type CallCredentials } from '../common/auth/authenticator.js';
import { keystoneTokenValidatorFromEnv } from '../common/auth/keystone-tokens.js';
import { createStaticTokens, hashToken, newToken } from '../common/auth/static-tokens.js';
import type { Tls } from '../common/tls.js';
import { makeRoleCertificates } from '../test/support/certificates.js';
import { openrcEnv, startOpenStackDouble } from '../test/support/openstack-double.js';
import {
  conductorEnv,
  conductorLoadSettings,
  describeMachine,
  openBenchDatabase,
  runLoadChild,
  serveLoad,
  serveUntilStopped,
  startConductorFromEnv,
  startServerChild,
  type BenchDatabase,
  type LoadConfig,
} from './support/conductor-load.js';

const self = fileURLToPath(import.meta.url);
const quick = process.env.QUICK === '1';

const settings = {
  ...conductorLoadSettings({ durationMs: quick ? 2_000 : 5_000, vims: quick ? 2_000 : 10_000 }),
  authorizeCalls: Number(process.env.BENCH_AUTHORIZE_CALLS ?? 100_000),
  authorizeWarmupCalls: Number(process.env.BENCH_AUTHORIZE_WARMUP_CALLS ?? 1_000),
};

type Security = 'plaintext' | 'mtls' | 'mtlsAuthz';

/** Set by the parent for the children: where make-certs.sh wrote the certificates. */
const certEnv = {
  ca: 'BENCH_TLS_CA',
  conductorCert: 'BENCH_TLS_CONDUCTOR_CERT',
  conductorKey: 'BENCH_TLS_CONDUCTOR_KEY',
  executorCert: 'BENCH_TLS_EXECUTOR_CERT',
  executorKey: 'BENCH_TLS_EXECUTOR_KEY',
  trustDomain: 'BENCH_TRUST_DOMAIN',
} as const;

const fromEnv = (name: string): Buffer => readFileSync(process.env[name]!);

// ---------------------------------------------------------------- children
// The load generator is bench/conductor-throughput.ts's (bench/support/conductor-load.ts),
// heartbeats only, with the channel credentials of the configuration under test.

interface SecuredLoadConfig extends LoadConfig {
  security: Security;
}

/** TLS verifying the mesh CA, presenting the executor's certificate; undefined: plaintext. */
function executorCredentials(security: Security): ChannelCredentials | undefined {
  if (security === 'plaintext') return undefined;
  return ChannelCredentials.createSsl(fromEnv(certEnv.ca), fromEnv(certEnv.executorKey), fromEnv(certEnv.executorCert));
}

async function child(mode: string): Promise<void> {
  if (mode === 'load') return serveLoad<SecuredLoadConfig>((config) => executorCredentials(config.security));
  const security = process.env.BENCH_SECURITY as Security;
  const tls: Tls | undefined =
    security === 'plaintext'
      ? undefined
      : {
          cert: fromEnv(certEnv.conductorCert),
          key: fromEnv(certEnv.conductorKey),
          ca: fromEnv(certEnv.ca),
          clientCertificates: 'require',
        };
  const auth = security === 'mtlsAuthz' ? createAuth({ mode: 'enforced', trustDomain: process.env[certEnv.trustDomain] }) : undefined;
  serveUntilStopped(await startConductorFromEnv({ tls, auth }));
}

// ---------------------------------------------------------------- orchestration

async function load(
  config: Pick<SecuredLoadConfig, 'target' | 'security' | 'vims'>,
  conductorPid: number,
  postgresBackends: () => Promise<number[]>,
  env: NodeJS.ProcessEnv,
) {
  return runLoadChild<SecuredLoadConfig, 'conductor'>({
    script: self,
    env,
    config,
    settings,
    processes: { conductor: [conductorPid] },
    postgresBackends,
  });
}

/** One UpdateVim with the given client certificate (or none): the status code it got, OK included. */
async function probeCall(
  target: string,
  credentials: ChannelCredentials | undefined,
  vim: { id: string; actionId: string },
): Promise<string> {
  const channel = createChannel(target, credentials);
  try {
    await createClient(VimMonitorAction2ConductorDefinition, channel).updateVim(
      { vimId: vim.id, actionId: vim.actionId, status: VimStatus.VIM_STATUS_REACHABLE },
      { signal: AbortSignal.timeout(5_000) },
    );
    return 'OK';
  } catch (err) {
    return err instanceof ClientError ? Status[err.code] : String(err);
  } finally {
    channel.close();
  }
}

// ---------------------------------------------------------------- authorize() in process

interface AuthorizeTiming {
  calls: number;
  p50Us: number;
  p99Us: number;
  maxUs: number;
  meanUs: number;
  /** Keystone token validations (GET /v3/auth/tokens at the double) during the timed calls. */
  keystoneValidations: number;
  principal: string;
}

async function timeAuthorize(auth: Auth, rule: string, credentials: CallCredentials, validations: () => number): Promise<AuthorizeTiming> {
  const principal = await auth.authorize(rule, credentials); // the warm-up call (the first of a Keystone token validates it)
  const n = settings.authorizeCalls;
  const samples = new Float64Array(n);
  const validationsBefore = validations();
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    await auth.authorize(rule, credentials);
    samples[i] = performance.now() - t0;
  }
  const keystoneValidations = validations() - validationsBefore;
  samples.sort();
  const us = (ms: number) => Math.round(ms * 1000 * 100) / 100;
  const pct = (p: number) => samples[Math.min(n - 1, Math.floor((p / 100) * n))];
  return {
    calls: n,
    p50Us: us(pct(50)),
    p99Us: us(pct(99)),
    maxUs: us(samples[n - 1]),
    meanUs: us(samples.reduce((a, b) => a + b, 0) / n),
    keystoneValidations,
    principal: principal.name,
  };
}

async function authorizeTimings(trustDomain: string) {
  const keystone = await startOpenStackDouble();
  try {
    const validator = keystoneTokenValidatorFromEnv(openrcEnv(keystone));
    const staticToken = newToken();
    const auth = createAuth({
      mode: 'enforced',
      trustDomain,
      keystone: validator,
      staticTokens: createStaticTokens([{ name: 'bench-reader', sha256: hashToken(staticToken), roles: ['reader'], projects: ['proj-a'] }]),
    });
    const keystoneToken = keystone.issueToken({ userName: 'bench-reader', projectId: 'proj-a', roles: ['reader'] });
    const getVim = 'vimmon.tacker.v1.VimService/GetVim';
    const updateVim = 'vimmon.conductor.v1.VimMonitorAction2Conductor/UpdateVim';
    const validations = () => keystone.validations;

    const cases: Array<[string, CallCredentials]> = [
      [getVim, { authorization: `Bearer ${keystoneToken}` }],
      [getVim, { authorization: `Bearer ${staticToken}` }],
      [updateVim, { peerIdentity: `spiffe://${trustDomain}/vimmon/executor` }],
    ];
    const validationsBeforeWarmup = keystone.validations;
    for (const [rule, credentials] of cases) {
      for (let i = 0; i < settings.authorizeWarmupCalls; i++) await auth.authorize(rule, credentials);
    }
    const warmupValidations = keystone.validations - validationsBeforeWarmup;
    const keystoneCached = await timeAuthorize(auth, ...cases[0], validations);
    process.stderr.write(`authorize keystoneCached: ${JSON.stringify(keystoneCached)}\n`);
    const staticTokenTiming = await timeAuthorize(auth, ...cases[1], validations);
    process.stderr.write(`authorize staticToken: ${JSON.stringify(staticTokenTiming)}\n`);
    const spiffe = await timeAuthorize(auth, ...cases[2], validations);
    process.stderr.write(`authorize spiffeCertificate: ${JSON.stringify(spiffe)}\n`);
    const round = (x: number) => Math.round(x * 100) / 100;
    return {
      rules: { tokens: getVim, certificate: updateVim },
      keystoneWarmupValidations: warmupValidations,
      keystoneCached,
      staticToken: staticTokenTiming,
      spiffeCertificate: spiffe,
      addedP99Us: {
        keystoneCachedOverStaticToken: round(keystoneCached.p99Us - staticTokenTiming.p99Us),
        keystoneCachedOverSpiffeCertificate: round(keystoneCached.p99Us - spiffe.p99Us),
      },
    };
  } finally {
    await keystone.close();
  }
}

// ---------------------------------------------------------------- main

async function main(): Promise<void> {
  const loadAverageAtStart = os.loadavg().map((x) => Math.round(x * 100) / 100);
  process.stderr.write('making certificates (deploy/make-certs.sh)\n');
  const certs = makeRoleCertificates();
  const scenarios: Partial<Record<Security, Awaited<ReturnType<typeof load>>>> = {};
  const checks: Record<string, { expected: string; got: string }> = {};
  let db: BenchDatabase | undefined;
  try {
    db = await openBenchDatabase(settings.vims);
    const { sql, vims } = db;
    const executor = certs.role('executor');
    const conductorCert = certs.role('conductor');
    const childEnv = {
      ...conductorEnv(db.url, settings),
      [certEnv.ca]: certs.files.ca,
      [certEnv.conductorCert]: conductorCert.files.cert,
      [certEnv.conductorKey]: conductorCert.files.key,
      [certEnv.executorCert]: executor.files.cert,
      [certEnv.executorKey]: executor.files.key,
      [certEnv.trustDomain]: certs.trustDomain,
    };
    // Other identities, to show each configuration is what it claims (not timed).
    const withCert = (role: 'executor' | 'server') => ChannelCredentials.createSsl(certs.ca, certs.role(role).key, certs.role(role).cert);
    const expectations: Record<Security, Array<[string, ChannelCredentials | undefined, string]>> = {
      plaintext: [['plaintext client', undefined, 'OK']],
      mtls: [
        ['TLS client without a certificate', ChannelCredentials.createSsl(certs.ca), 'UNAVAILABLE'],
        ['server certificate (no authorization)', withCert('server'), 'OK'],
      ],
      mtlsAuthz: [
        ['executor certificate', withCert('executor'), 'OK'],
        ['server certificate', withCert('server'), 'PERMISSION_DENIED'],
      ],
    };

    for (const security of ['plaintext', 'mtls', 'mtlsAuthz'] as const) {
      await db.resetVims();
      const conductor = await startServerChild(self, 'serve-conductor', { env: { ...childEnv, BENCH_SECURITY: security } });
      try {
        for (const [label, credentials, expected] of expectations[security]) {
          checks[`${security}: ${label}`] = { expected, got: await probeCall(conductor.address, credentials, vims[0]) };
        }
        scenarios[security] = await load({ target: conductor.address, security, vims }, conductor.process.pid!, db.backendPids, childEnv);
      } finally {
        await conductor.stop();
      }
      process.stderr.write(`${security}: ${JSON.stringify(scenarios[security])}\n`);
    }

    process.stderr.write(`authorize(): ${settings.authorizeCalls} calls per credential\n`);
    const authorize = await authorizeTimings(certs.trustDomain);

    const rate = (k: Security) => scenarios[k]?.reportsPerSecond;
    const p99 = (k: Security) => scenarios[k]?.p99Ms;
    const cpu = (k: Security) => scenarios[k]?.cpuMsPer1000Calls.conductor;
    const ratio = (a?: number, b?: number) => (a !== undefined && b ? Math.round((a / b) * 100) / 100 : null);
    const failedChecks = Object.entries(checks)
      .filter(([, c]) => c.got !== c.expected)
      .map(([k]) => k);
    console.log(
      JSON.stringify(
        {
          benchmark: 'auth-overhead',
          command: 'npm run -s bench:auth',
          machine: {
            ...(await describeMachine(sql)),
            /** 1, 5 and 15 min load averages: others' work on the shared machine. */
            loadAverage: { atStart: loadAverageAtStart, atEnd: os.loadavg().map((x) => Math.round(x * 100) / 100) },
          },
          settings: { ...settings, quick },
          scenarios,
          ratios: {
            reportsPerSecond: {
              mtlsToPlaintext: ratio(rate('mtls'), rate('plaintext')),
              mtlsAuthzToPlaintext: ratio(rate('mtlsAuthz'), rate('plaintext')),
              mtlsAuthzToMtls: ratio(rate('mtlsAuthz'), rate('mtls')),
            },
            p99: {
              mtlsToPlaintext: ratio(p99('mtls'), p99('plaintext')),
              mtlsAuthzToPlaintext: ratio(p99('mtlsAuthz'), p99('plaintext')),
              mtlsAuthzToMtls: ratio(p99('mtlsAuthz'), p99('mtls')),
            },
            conductorCpuPerCall: {
              mtlsToPlaintext: ratio(cpu('mtls'), cpu('plaintext')),
              mtlsAuthzToPlaintext: ratio(cpu('mtlsAuthz'), cpu('plaintext')),
              mtlsAuthzToMtls: ratio(cpu('mtlsAuthz'), cpu('mtls')),
            },
          },
          checks,
          failedChecks,
          authorize,
        },
        null,
        2,
      ),
    );
    if (failedChecks.length > 0) process.exitCode = 1;
  } finally {
    await db?.close();
    certs.remove();
  }
}

const mode = process.argv[2];
if (mode) await child(mode);
else await main();
