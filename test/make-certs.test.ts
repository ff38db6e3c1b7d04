// deploy/make-certs.sh, checked with openssl and with Node itself: a CA and one
// certificate per role whose URI SAN is the role's SPIFFE id, client
// certificates without a role, and a refusal to overwrite a CA.
import test, { type ExecutionContext } from 'ava';
import { execFileSync, spawnSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { makeCertsScript, makeRoleCertificates, vimmonRoles } from './support/certificates.js';

function scratch(t: ExecutionContext): string {
  const parent = mkdtempSync(path.join(tmpdir(), 'vimmon-make-certs-'));
  t.teardown(() => rmSync(parent, { recursive: true, force: true }));
  return parent;
}

/** Runs the script from another working directory, as an operator would. */
function makeCerts(args: string[], cwd = tmpdir()) {
  const r = spawnSync('bash', [makeCertsScript, ...args], { cwd, encoding: 'utf8' });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

const text = (file: string) => execFileSync('openssl', ['x509', '-noout', '-text', '-in', file], { encoding: 'utf8' });
const verify = (ca: string, file: string) => spawnSync('openssl', ['verify', '-CAfile', ca, file], { encoding: 'utf8' });
const mode = (file: string) => statSync(file).mode & 0o777;

/** The lines that follow an extension's name in `openssl x509 -text`. */
function extension(dump: string, name: string): string {
  const m = new RegExp(`X509v3 ${name}:( critical)? *\\n\\s+(.*)`).exec(dump);
  return m ? `${m[1] ? 'critical ' : ''}${m[2]!.trim()}` : '';
}

const uris = (dump: string) =>
  extension(dump, 'Subject Alternative Name')
    .split(', ')
    .filter((s) => s.startsWith('URI:'));

test('a CA and one certificate per role: SPIFFE id as the only URI SAN, both EKUs, P-256, keys 0600', async (t) => {
  const dir = path.join(scratch(t), 'certs');
  const run = makeCerts([dir]);
  t.is(run.status, 0, run.stderr);
  t.is(mode(dir), 0o700, 'DIR made 0700');
  t.deepEqual(
    readdirSync(dir).sort(),
    ['ca', ...vimmonRoles].flatMap((n) => [`${n}.key`, `${n}.pem`]).sort(),
    'nothing else is left behind (csr, ext, srl)',
  );

  const ca = path.join(dir, 'ca.pem');
  const caText = text(ca);
  t.regex(caText, /Subject: CN = vimmon CA \(vimmon\.local\)/);
  t.is(extension(caText, 'Basic Constraints'), 'critical CA:TRUE');
  t.is(extension(caText, 'Key Usage'), 'critical Certificate Sign, CRL Sign');
  t.is(mode(path.join(dir, 'ca.key')), 0o600);

  for (const role of vimmonRoles) {
    const file = path.join(dir, `${role}.pem`);
    const v = verify(ca, file);
    t.is(v.status, 0, `${role}: ${v.stdout}${v.stderr}`);
    t.is(v.stdout.trim(), `${file}: OK`);
    const dump = text(file);
    t.regex(dump, new RegExp(`Subject: CN = vimmon-${role}\\n`));
    t.regex(dump, /NIST CURVE: P-256/);
    t.deepEqual(uris(dump), [`URI:spiffe://vimmon.local/vimmon/${role}`], `${role}: exactly one URI SAN`);
    t.is(
      extension(dump, 'Subject Alternative Name'),
      `URI:spiffe://vimmon.local/vimmon/${role}, DNS:localhost, IP Address:127.0.0.1, IP Address:0:0:0:0:0:0:0:1`,
    );
    t.is(extension(dump, 'Extended Key Usage'), 'TLS Web Server Authentication, TLS Web Client Authentication');
    t.is(extension(dump, 'Basic Constraints'), 'CA:FALSE');
    t.is(mode(path.join(dir, `${role}.key`)), 0o600, `${role}.key is 0600`);
    // The 365 days by default.
    const x = new X509Certificate(readFileSync(file));
    t.true(Math.abs(Date.parse(x.validTo) - Date.now() - 365 * 86_400_000) < 86_400_000);
  }
  t.regex(run.stdout, /spiffe:\/\/vimmon\.local\/vimmon\/monitor/);

  // Node sees the URI SAN (this is what a service reads from its peer).
  const server = new X509Certificate(readFileSync(path.join(dir, 'server.pem')));
  t.true(server.subjectAltName!.split(', ').includes('URI:spiffe://vimmon.local/vimmon/server'), server.subjectAltName);
  t.true(server.checkIssued(new X509Certificate(readFileSync(ca))));
});

test('a second run refuses to replace the CA (exit 2); --reuse-ca issues from it, --force replaces it', async (t) => {
  const dir = path.join(scratch(t), 'certs');
  t.is(makeCerts([dir]).status, 0);
  const caBefore = readFileSync(path.join(dir, 'ca.pem'));
  const serverBefore = readFileSync(path.join(dir, 'server.pem'));

  const again = makeCerts([dir]);
  t.is(again.status, 2);
  t.regex(again.stderr, /ca\.key exists.*--force/);
  t.deepEqual(readFileSync(path.join(dir, 'ca.pem')), caBefore, 'the CA is untouched');
  t.deepEqual(readFileSync(path.join(dir, 'server.pem')), serverBefore, 'and so are the leaves');

  const reuse = makeCerts([dir, '--reuse-ca', '--client', 'alice']);
  t.is(reuse.status, 0, reuse.stderr);
  t.deepEqual(readFileSync(path.join(dir, 'ca.pem')), caBefore, '--reuse-ca keeps the CA');
  t.notDeepEqual(readFileSync(path.join(dir, 'server.pem')), serverBefore, 'and issues the roles again');
  t.is(verify(path.join(dir, 'ca.pem'), path.join(dir, 'server.pem')).status, 0);

  const force = makeCerts([dir, '--force']);
  t.is(force.status, 0, force.stderr);
  t.notDeepEqual(readFileSync(path.join(dir, 'ca.pem')), caBefore, '--force makes a new CA');
  t.is(verify(path.join(dir, 'ca.pem'), path.join(dir, 'server.pem')).status, 0);
  t.not(verify(path.join(dir, 'ca.pem'), path.join(dir, 'alice.pem')).status, 0, 'alice.pem is from the old CA');
  t.regex(force.stderr, /warning: .*alice\.pem was not signed by the CA/);

  const both = makeCerts([dir, '--force', '--reuse-ca']);
  t.is(both.status, 2);
  const none = makeCerts([path.join(dir, 'elsewhere'), '--reuse-ca']);
  t.is(none.status, 2);
  t.regex(none.stderr, /no CA/);
});

test('--client NAME: a CA-signed certificate with spiffe://TD/client/NAME, client use only', async (t) => {
  const dir = path.join(scratch(t), 'certs');
  const run = makeCerts([dir, '--client', 'alice', '--client=ci-bot']);
  t.is(run.status, 0, run.stderr);
  for (const name of ['alice', 'ci-bot']) {
    const file = path.join(dir, `${name}.pem`);
    t.is(verify(path.join(dir, 'ca.pem'), file).status, 0);
    const dump = text(file);
    t.regex(dump, new RegExp(`Subject: CN = ${name}\\n`));
    t.is(extension(dump, 'Subject Alternative Name'), `URI:spiffe://vimmon.local/client/${name}`);
    t.is(extension(dump, 'Extended Key Usage'), 'TLS Web Client Authentication');
    t.is(mode(path.join(dir, `${name}.key`)), 0o600);
  }
  t.is(makeCerts([path.join(dir, 'x'), '--client', 'server']).status, 2, 'a client cannot take a role name');
  t.is(makeCerts([path.join(dir, 'x'), '--client', 'ca']).status, 2, 'nor the CA file name');
  t.is(makeCerts([path.join(dir, 'x'), '--client', '../evil']).status, 2);
});

test('--trust-domain, --san and --days', async (t) => {
  const dir = path.join(scratch(t), 'certs');
  const run = makeCerts([
    dir,
    '--trust-domain',
    'nfv.example.org',
    '--san',
    'DNS:vimmon.example.org,IP:10.0.0.1',
    '--san',
    'DNS:*.vimmon.example.org',
    '--days',
    '30',
  ]);
  t.is(run.status, 0, run.stderr);
  t.regex(text(path.join(dir, 'ca.pem')), /Subject: CN = vimmon CA \(nfv\.example\.org\)/);
  const dump = text(path.join(dir, 'executor.pem'));
  t.is(
    extension(dump, 'Subject Alternative Name'),
    'URI:spiffe://nfv.example.org/vimmon/executor, DNS:localhost, IP Address:127.0.0.1, IP Address:0:0:0:0:0:0:0:1, DNS:vimmon.example.org, IP Address:10.0.0.1, DNS:*.vimmon.example.org',
  );
  const x = new X509Certificate(readFileSync(path.join(dir, 'executor.pem')));
  t.true(Math.abs(Date.parse(x.validTo) - Date.now() - 30 * 86_400_000) < 86_400_000);
});

test('usage: -h prints it; bad options, values and SANs exit 2 with a message and write nothing', async (t) => {
  const parent = scratch(t);
  const help = makeCerts(['-h']);
  t.is(help.status, 0);
  t.regex(help.stdout, /^Usage: make-certs\.sh DIR/);
  t.regex(makeCerts(['--help']).stdout, /--reuse-ca/);
  t.is(makeCerts([]).status, 2);
  const dir = path.join(parent, 'certs');
  for (const args of [
    ['--bogus'],
    ['--days', '0'],
    ['--days'],
    ['--trust-domain', 'Not/A/Domain'],
    ['--san', 'URI:spiffe://vimmon.local/vimmon/server'],
    ['--san', 'email:a@b'],
    ['other-dir'],
  ]) {
    const r = makeCerts([dir, ...args]);
    t.is(r.status, 2, args.join(' '));
    t.regex(r.stderr, /^make-certs\.sh: /, args.join(' '));
  }
  t.deepEqual(readdirSync(parent), [], 'no DIR made for a refused command');
});

test('makeRoleCertificates: the role set plus the misfits, and Node speaks mutual TLS with them', async (t) => {
  const certs = makeRoleCertificates();
  t.teardown(() => certs.remove());
  const ca = new X509Certificate(certs.ca);
  const x = (pem: Buffer) => new X509Certificate(pem);
  for (const role of vimmonRoles) {
    t.true(x(certs.role(role).cert).checkIssued(ca));
    t.true(x(certs.role(role).cert).subjectAltName!.includes(`URI:spiffe://vimmon.local/vimmon/${role}`));
    t.deepEqual(readFileSync(certs.role(role).files.key), certs.role(role).key);
  }
  t.throws(() => certs.role('nobody' as never), { message: /not a vimmon role/ });
  t.true(x(certs.noRole.cert).checkIssued(ca));
  t.is(x(certs.noRole.cert).subject, 'CN=some-monitoring-dashboard');
  t.false(x(certs.noRole.cert).subjectAltName!.includes('URI:'));
  t.true(x(certs.otherTrustDomain.cert).checkIssued(ca));
  t.true(x(certs.otherTrustDomain.cert).verify(ca.publicKey));
  t.true(x(certs.otherTrustDomain.cert).subjectAltName!.includes('URI:spiffe://elsewhere.example/vimmon/executor'));
  t.false(x(certs.stranger.cert).verify(ca.publicKey));
  t.true(x(certs.stranger.cert).subjectAltName!.includes('URI:spiffe://vimmon.local/vimmon/executor'));
  t.is(verify(certs.files.ca, certs.role('monitor').files.cert).status, 0);

  // A TLS server with the server's certificate requiring client certificates from the CA.
  let served = 0;
  const server = tls.createServer({ ...certs.role('server'), ca: certs.ca, requestCert: true, rejectUnauthorized: true }, (socket) => {
    served++;
    socket.end(socket.getPeerX509Certificate()?.subjectAltName ?? '');
  });
  server.on('tlsClientError', () => {});
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.teardown(() => server.close());
  const port = (server.address() as AddressInfo).port;
  const connect = (client: { cert: Buffer; key: Buffer }) =>
    new Promise<string>((resolve, reject) => {
      const socket = tls.connect({ host: '127.0.0.1', port, ...client, ca: certs.ca, servername: 'localhost' });
      let got = '';
      socket.setEncoding('utf8');
      socket.on('data', (d: string) => (got += d));
      socket.on('end', () => resolve(got));
      socket.on('error', reject);
    });
  t.regex(await connect(certs.role('executor')), /URI:spiffe:\/\/vimmon\.local\/vimmon\/executor/);
  t.regex(await connect(certs.otherTrustDomain), /elsewhere\.example/, 'the CA signed it: only an identity check refuses it');
  // With TLS 1.3 the client learns of the refusal after its handshake: an error or a bare close.
  const stranger = await connect(certs.stranger).catch((err: Error) => `refused: ${err.message}`);
  t.notRegex(stranger, /spiffe/);
  t.is(served, 2, 'the server never served the stranger');
});
