// The people commands run as processes against a running mesh: what they print
// (tables for people, one JSON object per line for programs) and their exit
// codes (0 done, 1 a failed call, 2 a wrong command line), every error one line.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import test from 'ava';
import { cliEnv, runCli, runCliLine, startCli, startCliMesh, useCompiledCli, type CliResult } from './support/cli-run.js';
import { projectA, startSecureMesh } from './support/secure-mesh.js';
import { closedPort, openTcpTarget } from './support/targets.js';
import { eventually } from './support/wait.js';
import { VimStatus } from '../gen/vimmon/common/v1/status.js';
import { AlarmType } from '../gen/vimmon/inspector/v1/inspector_service.js';

const show = (r: CliResult) => `exit ${r.code}\nstdout:\n${r.stdout}\nstderr:\n${r.stderr}`;
const jsonLines = (text: string) =>
  text
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as Record<string, unknown>);
/** One line on stderr, starting "vimmon: ", and no stack trace. */
const oneErrorLine = (r: CliResult) =>
  r.stderr.endsWith('\n') && r.stderr.split('\n').length === 2 && r.stderr.startsWith('vimmon: ') && !/\n\s+at /.test(r.stderr);

useCompiledCli();

function tempDir(t: import('ava').ExecutionContext): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'vimmon-cli-commands-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

test('a VIM from register to deregister: list (table and JSON), show by name, update --set, watch, events', async (t) => {
  const { env, mesh } = await startCliMesh(t);
  const target = await openTcpTarget();
  t.teardown(() => target.close());
  const dir = tempDir(t);
  // Tacker's vim.yaml, as `openstack vim register --config-file` takes it.
  writeFileSync(
    path.join(dir, 'vim.yaml'),
    `auth_url: '${target.url}'\nusername: 'nfv_user'\npassword: 'devstack-secret'\nproject_name: 'nfv'\nproject_domain_name: 'Default'\nuser_domain_name: 'Default'\ncert_verify: 'True'\ntype: openstack\n`,
  );

  const registered = await runCli(
    t,
    [
      'vim',
      'register',
      'edge-1',
      '--config-file',
      path.join(dir, 'vim.yaml'),
      '--description',
      'edge site 1',
      '--monitor',
      'interval=500ms',
      '--monitor',
      'timeout=200ms',
      '-o',
      'json',
    ],
    env,
  );
  t.is(registered.code, 0, show(registered));
  const vim = JSON.parse(registered.stdout) as {
    id: string;
    name: string;
    authUrl: string;
    project: string;
    credentials: { password: Record<string, string> };
  };
  t.is(vim.name, 'edge-1');
  t.is(vim.authUrl, target.url);
  t.is(vim.project, 'nfv');
  t.deepEqual(vim.credentials.password, { username: 'nfv_user', password: '***', userDomainName: 'Default', projectDomainName: 'Default' });
  t.false(registered.stdout.includes('devstack-secret'), 'the password never comes back');

  // A second VIM, its password from standard input, so the list has two rows to align.
  const second = await runCli(
    t,
    [
      'vim',
      'register',
      'core-cloud-long-name',
      '--auth-url',
      'http://127.0.0.1:9/v3',
      '--username',
      'admin',
      '--password-file',
      '-',
      '--project',
      'p2',
    ],
    env,
    'from-stdin\n',
  );
  t.is(second.code, 0, show(second));
  t.regex(second.stdout, /^name: +core-cloud-long-name$/m, 'a person gets the fields, one per line');
  t.regex(second.stdout, /^credentials: +password of admin$/m);

  await eventually(
    async () => (await mesh.vims().getVim({ id: vim.id })).vim?.status === VimStatus.VIM_STATUS_REACHABLE,
    60_000,
    'edge-1 REACHABLE (its first probe reported)',
    100,
  );

  const table = await runCli(t, ['vim', 'list'], env);
  t.is(table.code, 0, show(table));
  const rows = table.stdout.trimEnd().split('\n');
  t.is(rows.length, 3, show(table));
  t.regex(rows[0]!, /^ID +NAME +TYPE +STATUS +DEFAULT +AUTH URL +STATUS CHANGED$/);
  // Aligned: every column starts at the header's offset.
  const statusColumn = rows[0]!.indexOf('STATUS ');
  const edge = rows.find((r) => r.includes(' edge-1 '))!;
  t.is(edge.indexOf('REACHABLE'), statusColumn, show(table));
  const core = rows.find((r) => r.includes(' core-cloud-long-name '))!;
  t.is(core.search(/ (PENDING|REACHABLE|UNREACHABLE) /) + 1, statusColumn, show(table));
  t.false(table.stdout.includes('\u001b['), 'no colour when stdout is not a terminal');
  t.regex(
    edge,
    new RegExp(`^${vim.id} +edge-1 +openstack +REACHABLE +${target.url.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')} +(just now|\\d+s ago)$`),
  );

  const json = await runCli(t, ['vim', 'list', '-o', 'json'], env);
  t.is(json.code, 0, show(json));
  const listed = jsonLines(json.stdout);
  t.deepEqual(
    listed.map((v) => v.name),
    ['edge-1', 'core-cloud-long-name'],
    'one object per line, oldest first, with proto JSON names',
  );
  t.true('authUrl' in listed[0]! && 'statusChangedAt' in listed[0]!);
  // The canonical mapping, as grpcurl prints it: enum names, RFC 3339 times, "1.5s" durations.
  const monitor = listed[0]!.monitor as Record<string, unknown>;
  t.regex(String(monitor.interval), /^\d+(\.\d+)?s$/);
  t.is(listed[0]!.status, 'VIM_STATUS_REACHABLE');
  t.regex(String(listed[0]!.createdAt), /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$/);
  const reachableOnly = await runCli(t, ['vim', 'list', '--status', 'reachable', '-o', 'json'], env);
  t.deepEqual(
    jsonLines(reachableOnly.stdout).map((v) => v.name),
    ['edge-1'],
  );

  const yaml = await runCli(t, ['vim', 'show', 'edge-1', '-o', 'yaml'], env);
  t.is(yaml.code, 0, show(yaml));
  t.regex(yaml.stdout, new RegExp(`^id: ${vim.id}$`, 'm'));
  t.regex(yaml.stdout, /^status: VIM_STATUS_REACHABLE$/m);

  const shown = await runCli(t, ['vim', 'show', vim.id], env);
  t.is(shown.code, 0, show(shown));
  t.regex(shown.stdout, /^status: +REACHABLE$/m);
  t.regex(shown.stdout, /^monitor: +tcp every 500ms, timeout 200ms,/m);

  // A watch of edge-1: its current status first, then the change the closed target causes.
  const watch = startCli(t, ['vim', 'watch', 'edge-1', '--initial'], env);
  const initial = await watch.waitForLine('the initial status', (l) => l.includes('edge-1'));
  t.regex(initial, /^\S+Z {2}edge-1 {2}REACHABLE {2}\(current\)$/);

  const updated = await runCli(
    t,
    ['vim', 'update', 'edge-1', '--set', 'description=rack 4', '--set', 'monitor.unreachable_after=2', '-o', 'json'],
    env,
  );
  t.is(updated.code, 0, show(updated));
  const after = JSON.parse(updated.stdout) as { description: string; monitor: { unreachableAfter: number }; actionId: string };
  t.is(after.description, 'rack 4');
  t.is(after.monitor.unreachableAfter, 2);

  await target.close();
  const change = await watch.waitForLine('REACHABLE → UNREACHABLE', (l) => l.includes('REACHABLE → UNREACHABLE'));
  t.regex(change, /^\S+Z {2}edge-1 {2}REACHABLE → UNREACHABLE {2}\(event \d+\)$/);
  t.is(await watch.interrupt(), 0, `Ctrl-C ends a watch cleanly: ${watch.stderr()}`);

  const events = await runCli(t, ['vim', 'events', 'edge-1'], env);
  t.is(events.code, 0, show(events));
  const eventRows = events.stdout.trimEnd().split('\n');
  t.regex(eventRows[0]!, /^EVENT +CHANGED +FROM +TO +ACTION$/);
  t.regex(eventRows[1]!, /^\d+ +\S+Z \((just now|\d+[sm] ago)\) +PENDING +REACHABLE +[0-9a-f-]{36}$/);
  t.true(
    eventRows.some((r) => / REACHABLE +UNREACHABLE /.test(r)),
    show(events),
  );

  const audit = await runCli(t, ['vim', 'audit', 'edge-1'], env);
  t.is(audit.code, 0, show(audit));
  const auditRows = audit.stdout.trimEnd().split('\n');
  t.regex(auditRows[0]!, /^TIME +ACTION +BY +BY PROJECT +OWNER +CHANGED$/);
  t.regex(auditRows[1]!, /^\S+Z \((just now|\d+[sm] ago)\) +register +development/);
  t.regex(auditRows[2]!, / update +development +description,monitor\.unreachable_after$/);

  const bye = await runCli(t, ['vim', 'deregister', 'edge-1'], env);
  t.is(bye.code, 0, show(bye));
  t.is(bye.stdout, `deregistered VIM edge-1 (${vim.id})\n`);
  const gone = await runCli(t, ['vim', 'show', 'edge-1'], env);
  t.is(gone.code, 1, show(gone));
  t.true(oneErrorLine(gone), show(gone));
  t.is(gone.stderr, 'vimmon: no VIM with the id or name "edge-1"\n');
  // Its history stays readable by id.
  const history = await runCli(t, ['vim', 'events', vim.id, '-o', 'json'], env);
  t.is(history.code, 0, show(history));
  t.true(jsonLines(history.stdout).length >= 2, show(history));
  t.true(
    jsonLines(history.stdout).every((e) => e.vimId === vim.id),
    show(history),
  );
});

test('vim update: an unknown --set key is a usage error naming it (exit 2); a NOT_FOUND id is a failed call (exit 1)', async (t) => {
  const { env } = await startCliMesh(t);
  const r = await runCli(
    t,
    ['vim', 'register', 'k8s', '--auth-url', 'https://127.0.0.1:6443', '--type', 'kubernetes', '--bearer-token-env', 'K8S_TOKEN'],
    {
      ...env,
      K8S_TOKEN: 'eyJhbGciOi',
    },
  );
  t.is(r.code, 0, show(r));
  t.regex(r.stdout, /^type: +kubernetes$/m);
  t.regex(r.stdout, /^credentials: +bearer token$/m);

  const unknown = await runCli(t, ['vim', 'update', 'k8s', '--set', 'colour=blue'], env);
  t.is(unknown.code, 2, show(unknown));
  t.true(oneErrorLine(unknown), show(unknown));
  t.regex(
    unknown.stderr,
    /^vimmon: --set: unknown key "colour" \(known: name, description, type, auth_url, project, is_default, monitor\.probe,/,
  );

  const badValue = await runCli(t, ['vim', 'update', 'k8s', '--set', 'monitor.interval=soon'], env);
  t.is(badValue.code, 2, show(badValue));
  t.regex(badValue.stderr, /^vimmon: --set monitor interval: expected a duration/);

  const invalid = await runCli(t, ['vim', 'update', 'k8s', '--set', 'auth_url=ftp://x'], env);
  t.is(invalid.code, 1, show(invalid));
  t.true(oneErrorLine(invalid), show(invalid));
  t.regex(invalid.stderr, /^vimmon: cannot update VIM "k8s": INVALID_ARGUMENT .*auth_url/);

  const missing = await runCli(t, ['vim', 'show', '00000000-0000-4000-8000-000000000000'], env);
  t.is(missing.code, 1, show(missing));
  t.is(missing.stderr, 'vimmon: no VIM with the id or name "00000000-0000-4000-8000-000000000000"\n');

  const taken = await runCli(t, ['vim', 'register', 'k8s', '--auth-url', 'http://127.0.0.1:9/'], env);
  t.is(taken.code, 1, show(taken));
  t.true(oneErrorLine(taken), show(taken));
  t.regex(taken.stderr, /^vimmon: cannot register VIM "k8s": ALREADY_EXISTS /);
});

test('alarms: a watch sees the alarm `event report` raises, the list holds it, fault show profiles it; status reports every role', async (t) => {
  const { env, inspector } = await startCliMesh(t);
  const watch = startCli(t, ['alarm', 'watch', '--host', 'compute-7', '-o', 'json'], env);
  const other = startCli(t, ['alarm', 'watch', '--host', 'compute-8'], env);
  // The watch is live once the inspector counts its subscription.
  await eventually(async () => (await inspector.getStatus({})).subscribers >= 2, 60_000, 'both alarm watches subscribed', 100);

  const reported = await runCli(
    t,
    [
      'event',
      'report',
      '--host',
      'compute-7',
      '--type',
      'compute.host.down',
      '--time',
      '2026-11-22T10:00:00Z',
      '--monitor-event-id',
      'e-1',
    ],
    env,
  );
  t.is(reported.code, 0, show(reported));
  t.regex(reported.stdout, /^accepted 1\nfault ([0-9a-f-]+) \(vimmon fault show \1\)\n$/);
  const faultId = /^fault (\S+)/m.exec(reported.stdout)![1]!;

  const line = await watch.waitForLine('the HOST_DOWN alarm', (l) => l.includes('ALARM_TYPE_HOST_DOWN'));
  const alarm = JSON.parse(line) as { alarmId: number; host: string; state: string; faultId: string; monitorEventId: string };
  t.is(alarm.host, 'compute-7');
  t.is(alarm.state, 'down');
  t.is(alarm.faultId, faultId);
  t.is(alarm.monitorEventId, 'e-1');

  const hosts = await runCli(t, ['host', 'list'], env);
  t.is(hosts.code, 0, show(hosts));
  t.regex(
    hosts.stdout,
    new RegExp(`^HOST +STATE +SINCE +VMS +NOVA DONE +FAULT\ncompute-7 +down +(just now|\\d+s ago) +0 +(yes|no) +${faultId}\n$`),
  );

  const again = await runCli(t, ['event', 'report', '--host', 'compute-7'], env);
  t.is(again.code, 0, show(again));
  t.regex(again.stdout, /^accepted 1, duplicate 1 \(host already down: nothing raised\)\n$/);

  const list = await runCli(t, ['alarm', 'list', '--type', 'host_down'], env);
  t.is(list.code, 0, show(list));
  const rows = list.stdout.trimEnd().split('\n');
  t.regex(rows[0]!, /^ID +RAISED +TYPE +SUBJECT +PROJECT +STATE +SEVERITY$/);
  t.is(rows.length, 2, show(list));
  t.regex(rows[1]!, new RegExp(`^${alarm.alarmId} +(just now|\\d+s ago) +HOST_DOWN +host compute-7 +down +critical$`));
  const listedJson = await runCli(t, ['alarm', 'list', '--host', 'compute-7', '-o', 'json'], env);
  t.deepEqual(
    jsonLines(listedJson.stdout).map((a) => a.alarmId),
    [alarm.alarmId],
  );
  const none = await runCli(t, ['alarm', 'list', '--host', 'compute-7', '--after', String(alarm.alarmId)], env);
  t.is(none.code, 0, show(none));
  t.is(none.stdout, '');
  t.is(none.stderr, 'no alarms\n');

  const faults = await runCli(t, ['fault', 'show'], env);
  t.is(faults.code, 0, show(faults));
  t.regex(faults.stdout, new RegExp(`^${faultId} +compute-7 +down +`, 'm'));
  const fault = await runCli(t, ['fault', 'show', faultId, '-o', 'json'], env);
  t.is(fault.code, 0, show(fault));
  t.like(JSON.parse(fault.stdout), {
    faultId,
    host: 'compute-7',
    status: 'down',
    monitorEventId: 'e-1',
    eventTime: '2026-11-22T10:00:00Z', // RFC 3339 as proto JSON writes it: no zero fraction
  });

  // The host comes back: the same watch sees HOST_RECOVERED; the other host's watch saw nothing.
  const up = await runCli(t, ['event', 'report', '--host', 'compute-7', '--status', 'up'], env);
  t.is(up.code, 0, show(up));
  await watch.waitForLine('the HOST_RECOVERED alarm', (l) => l.includes('ALARM_TYPE_HOST_RECOVERED'));
  t.is(await watch.interrupt(), 0);
  t.is(await other.interrupt(), 0);
  t.deepEqual(other.lines(), [], 'a filter the inspector applies: nothing for compute-8');
  const noHosts = await runCli(t, ['host', 'list', '-o', 'json'], env);
  t.is(noHosts.code, 0, show(noHosts));
  t.is(noHosts.stdout, '', 'compute-7 is up again');

  const status = await runCli(t, ['status'], env);
  t.is(status.code, 0, show(status));
  const lines = status.stdout.trimEnd().split('\n');
  t.regex(lines[0]!, /^ROLE +ADDRESS +HEALTH +DETAILS$/);
  for (const role of ['server', 'conductor', 'executor', 'inspector']) {
    t.true(
      lines.some((l) => new RegExp(`^${role} +127\\.0\\.0\\.1:\\d+ +SERVING`).test(l)),
      `${role} SERVING:\n${status.stdout}`,
    );
  }
  t.regex(status.stdout, /^executor +\S+ +SERVING +0 actions$/m);
  t.regex(status.stdout, /^inspector +\S+ +SERVING +3 events, \d+ subscribers, 0 VMs cached, 0 hosts down, last alarm \d+/m);
});

test('an unreachable server: exit 1 and one line naming the address, no stack trace; status names the roles down', async (t) => {
  const port = await closedPort();
  const env = cliEnv({ VIMMON_SERVER: `127.0.0.1:${port}` });
  const r = await runCli(t, ['vim', 'list', '--timeout', '3s'], env);
  t.is(r.code, 1, show(r));
  t.true(oneErrorLine(r), show(r));
  t.regex(
    r.stderr,
    new RegExp(`^vimmon: cannot reach the server at 127\\.0\\.0\\.1:${port}: UNAVAILABLE connect ECONNREFUSED 127\\.0\\.0\\.1:${port}\n$`),
  );

  const ports = await Promise.all([closedPort(), closedPort(), closedPort()]);
  const status = await runCli(
    t,
    [
      'status',
      '--timeout',
      '3s',
      '--conductor',
      `127.0.0.1:${ports[0]}`,
      '--executor',
      `127.0.0.1:${ports[1]}`,
      '--inspector',
      `127.0.0.1:${ports[2]}`,
    ],
    env,
  );
  t.is(status.code, 1, show(status));
  t.regex(status.stdout, new RegExp(`^server +127\\.0\\.0\\.1:${port} +UNREACHABLE +UNAVAILABLE connect ECONNREFUSED`, 'm'));
  t.regex(status.stderr, /^vimmon: 4 of 4 not serving: server at /);
});

test('usage: --help exits 0, a bad flag or value exits 2 with the usage on stderr, a token is not sent in plaintext beyond loopback', async (t) => {
  const env = cliEnv();
  for (const args of [
    ['vim', '--help'],
    ['vim', 'register', '--help'],
    ['alarm', 'watch', '--help'],
    ['status', '--help'],
  ]) {
    const r = await runCli(t, args, env);
    t.is(r.code, 0, `${args.join(' ')}: ${show(r)}`);
    t.regex(r.stdout, /^Usage: vimmon /, args.join(' '));
    t.is(r.stderr, '');
  }
  const register = await runCli(t, ['vim', 'register', '--help'], env);
  t.regex(register.stdout, /--password-file <file>/);
  t.regex(register.stdout, /VIMMON_TOKEN/, 'the target flags and their variables');

  const badFlag = await runCli(t, ['vim', 'list', '--colour'], env);
  t.is(badFlag.code, 2, show(badFlag));
  t.regex(badFlag.stderr, /^error: unknown option '--colour'\n/);
  t.regex(badFlag.stderr, /Usage: vimmon vim list \[options\]/);
  t.is(badFlag.stdout, '');

  const badChoice = await runCli(t, ['vim', 'list', '--status', 'sleepy'], env);
  t.is(badChoice.code, 2, show(badChoice));
  t.regex(badChoice.stderr, /--status <status>' argument 'sleepy' is invalid/);

  const missingArg = await runCli(t, ['vim', 'show'], env);
  t.is(missingArg.code, 2, show(missingArg));
  t.regex(missingArg.stderr, /missing required argument 'vim'/);

  const noSub = await runCli(t, ['vim'], env);
  t.is(noSub.code, 2, show(noSub));
  t.regex(noSub.stderr, /Usage: vimmon vim \[options\] \[command\]/);

  const badOutput = await runCli(t, ['-o', 'xml', 'status'], env);
  t.is(badOutput.code, 2, show(badOutput));

  const noAuthUrl = await runCli(t, ['vim', 'register', 'x'], env);
  t.is(noAuthUrl.code, 2, show(noAuthUrl));
  t.is(noAuthUrl.stderr, 'vimmon: --auth-url is required (or auth_url in --config-file)\n');

  const dir = tempDir(t);
  writeFileSync(path.join(dir, 'vim.yaml'), 'auth_url: http://127.0.0.1:9/\nregion: RegionOne\n');
  const badKey = await runCli(t, ['vim', 'register', 'x', '--config-file', path.join(dir, 'vim.yaml')], env);
  t.is(badKey.code, 2, show(badKey));
  t.regex(badKey.stderr, /^vimmon: --config-file \S+: unknown key "region" \(known: auth_url,/);

  const plaintext = await runCli(t, ['vim', 'list', '--server', '10.0.0.1:50051'], { ...env, VIMMON_TOKEN: 'vmt_secret' });
  t.is(plaintext.code, 2, show(plaintext));
  t.is(
    plaintext.stderr,
    "vimmon: refusing to send a token in plaintext to 10.0.0.1:50051: give --ca-file (or VIMMON_TLS_CA), or --tls for the system's CAs\n",
  );

  const badAddress = await runCli(t, ['vim', 'list'], { ...env, VIMMON_SERVER: 'nowhere' });
  t.is(badAddress.code, 2, show(badAddress));
  t.is(badAddress.stderr, 'vimmon: VIMMON_SERVER: expected host:port, got "nowhere"\n');

  // The role commands keep their own usage.
  const roles = await runCli(t, ['--help'], env);
  t.is(roles.code, 0);
  t.regex(roles.stdout, /^usage: vimmon \[all\|server\|conductor\|executor\|inspector\]/);
  t.regex(roles.stdout, /^ {2}vim {8}register, list/m);
});

test('a secured mesh: TLS from VIMMON_TLS_CA, tokens from VIMMON_TOKEN or --token-file, a client certificate; refusals are one line', async (t) => {
  const mesh = await startSecureMesh(t);
  const env = cliEnv({
    VIMMON_SERVER: mesh.server.address,
    VIMMON_CONDUCTOR: mesh.conductor.address,
    VIMMON_EXECUTOR: mesh.executor.address,
    VIMMON_INSPECTOR: mesh.inspector.address,
    VIMMON_TLS_CA: mesh.certs.files.ca,
  });
  const dir = tempDir(t);
  writeFileSync(path.join(dir, 'member-a.token'), `${mesh.tokens.memberA}\n`);

  const stranger = await runCli(t, ['vim', 'list'], env);
  t.is(stranger.code, 1, show(stranger));
  t.true(oneErrorLine(stranger), show(stranger));
  t.regex(stranger.stderr, /^vimmon: cannot list VIMs: UNAUTHENTICATED credentials required/);

  const registered = await runCli(
    t,
    ['vim', 'register', 'secure-1', '--auth-url', 'http://127.0.0.1:9/v3', '--token-file', path.join(dir, 'member-a.token'), '-o', 'json'],
    env,
  );
  t.is(registered.code, 0, show(registered));
  t.is((JSON.parse(registered.stdout) as { ownerProject: string }).ownerProject, projectA);

  const reader = { ...env, VIMMON_TOKEN: mesh.tokens.readerA };
  const listed = await runCli(t, ['vim', 'list', '-o', 'json'], reader);
  t.is(listed.code, 0, show(listed));
  t.deepEqual(
    jsonLines(listed.stdout).map((v) => v.name),
    ['secure-1'],
  );
  const denied = await runCli(t, ['vim', 'update', 'secure-1', '--set', 'description=mine'], reader);
  t.is(denied.code, 1, show(denied));
  t.true(oneErrorLine(denied), show(denied));
  t.regex(denied.stderr, /^vimmon: cannot update VIM "secure-1": PERMISSION_DENIED /);
  const otherProject = await runCli(t, ['vim', 'show', 'secure-1'], { ...env, VIMMON_TOKEN: mesh.tokens.memberB });
  t.is(otherProject.code, 1, show(otherProject));
  t.is(otherProject.stderr, 'vimmon: no VIM with the id or name "secure-1"\n', 'a VIM of another project is not listed to its caller');

  // The monitor's certificate reports a fault (mutual TLS), an admin token reads the alarm.
  const monitor = mesh.certs.role('monitor').files;
  const reported = await runCli(t, ['event', 'report', '--host', 'compute-9', '--cert-file', monitor.cert, '--key-file', monitor.key], env);
  t.is(reported.code, 0, show(reported));
  t.regex(reported.stdout, /^accepted 1\n/);
  const admin = { ...env, VIMMON_TOKEN: mesh.tokens.admin };
  const alarms = await runCli(t, ['alarm', 'list', '--host', 'compute-9', '-o', 'json'], admin);
  t.is(alarms.code, 0, show(alarms));
  t.like(jsonLines(alarms.stdout)[0], { type: 'ALARM_TYPE_HOST_DOWN', host: 'compute-9' });

  const status = await runCli(t, ['status'], admin);
  t.is(status.code, 0, show(status));
  t.regex(status.stdout, /^executor +\S+ +SERVING +1 action$/m);
  t.regex(status.stdout, /^inspector +\S+ +SERVING +1 events,/m);
  // A reader may see health (open to anyone) but not the executors' actions.
  const readerStatus = await runCli(t, ['status'], reader);
  t.is(readerStatus.code, 0, show(readerStatus));
  t.regex(readerStatus.stdout, /^executor +\S+ +SERVING +ListActions: PERMISSION_DENIED /m);
});

test("README's command line examples run, line by line, against a mesh", async (t) => {
  const readme = readFileSync(new URL('../README.md', import.meta.url), 'utf8');
  const blocks = [...readme.matchAll(/```sh vimmon\n([\s\S]*?)```/g)].map((m) => m[1]!);
  t.is(blocks.length, 1, 'one block of commands');
  const lines = blocks[0]!.split('\n').filter((l) => l.trim() && !l.startsWith('#'));
  t.true(lines.length >= 10, `${lines.length} commands`);
  const { env } = await startCliMesh(t);
  const dir = tempDir(t);
  writeFileSync(path.join(dir, 'nfv-password'), 'devstack\n');
  for (const line of lines) {
    const r = await runCliLine(t, line, env, dir);
    t.is(r.code, 0, `${line}\n${show(r)}`);
    // What it says (an event list may still be empty, and says so on stderr) is the other tests' business.
    t.true(r.stdout.length + r.stderr.length > 0, `${line} said something`);
  }
});

test('host maintenance start|list|end and host affected: a fault under maintenance raises an expected alarm', async (t) => {
  const { env, inspector } = await startCliMesh(t);
  const started = await runCli(t, ['host', 'maintenance', 'start', 'compute-5', '--session', 's-1', '--reason', 'kernel upgrade'], env);
  t.is(started.code, 0, show(started));
  t.regex(started.stdout, /^host compute-5: in maintenance since (just now|\d+s ago)\n$/);
  const again = await runCli(t, ['host', 'maintenance', 'start', 'compute-5', '-o', 'json'], env);
  t.is(again.code, 0, show(again));
  t.like(JSON.parse(again.stdout), { changed: false, maintenance: { host: 'compute-5', sessionId: 's-1', reason: 'kernel upgrade' } });
  const listed = await runCli(t, ['host', 'maintenance', 'list'], env);
  t.is(listed.code, 0, show(listed));
  t.regex(listed.stdout, /^HOST +SINCE +SESSION +BY +REASON\ncompute-5 +(just now|\d+s ago) +s-1 +\S+ +kernel upgrade\n$/);

  const reported = await runCli(t, ['event', 'report', '--host', 'compute-5'], env);
  t.is(reported.code, 0, show(reported));
  const alarms = await eventually(
    async () => {
      const { alarms } = await inspector.listAlarms({ filter: { hosts: ['compute-5'] } });
      return alarms.some((a) => a.type === AlarmType.ALARM_TYPE_HOST_DOWN) && alarms;
    },
    30_000,
    'the HOST_DOWN alarm of compute-5',
  );
  t.true(alarms.find((a) => a.type === AlarmType.ALARM_TYPE_HOST_DOWN)!.expected, 'the fault was planned');

  const affected = await runCli(t, ['host', 'affected', 'compute-5'], env);
  t.is(affected.code, 0, show(affected));
  t.regex(affected.stdout, /^host: +compute-5\nstate: +down\n/m);
  t.is(affected.stderr, 'no VMs on that host in the cache\n');
  const both = await runCli(t, ['host', 'affected', 'compute-5', '--fault', 'x'], env);
  t.is(both.code, 2, show(both));

  const ended = await runCli(t, ['host', 'maintenance', 'end', 'compute-5'], env);
  t.is(ended.code, 0, show(ended));
  t.is(ended.stdout, 'host compute-5: not in maintenance\n');
  const none = await runCli(t, ['host', 'maintenance', 'list', '-o', 'json'], env);
  t.is(none.stdout, '');
  const types = (await inspector.listAlarms({ filter: { hosts: ['compute-5'] } })).alarms.map((a) => a.type);
  t.true(types.includes(AlarmType.ALARM_TYPE_HOST_MAINTENANCE_STARTED) && types.includes(AlarmType.ALARM_TYPE_HOST_MAINTENANCE_ENDED));
});
