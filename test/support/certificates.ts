// A throw-away CA and certificates for 127.0.0.1, made with the openssl command;
// and the per-role set deploy/make-certs.sh makes, with the misfits a test of
// identities needs beside it.
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export interface Certificates {
  dir: string;
  ca: Buffer;
  /** A certificate signed by the CA, for 127.0.0.1 (server and client use). */
  cert: Buffer;
  key: Buffer;
  files: { cert: string; key: string; ca: string };
  /** A certificate from another CA (not trusted). */
  stranger: { cert: Buffer; key: Buffer };
  remove(): void;
}

export function makeCertificates(): Certificates {
  const dir = mkdtempSync(path.join(tmpdir(), 'vimmon-tls-'));
  const f = (n: string) => path.join(dir, n);
  const ssl = (...args: string[]) => execFileSync('openssl', args, { stdio: 'pipe' });
  const ca = (name: string) =>
    ssl(
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:P-256',
      '-nodes',
      '-days',
      '2',
      '-subj',
      `/CN=${name}`,
      '-keyout',
      f(`${name}.key`),
      '-out',
      f(`${name}.pem`),
    );
  const leaf = (name: string, issuer: string) => {
    ssl(
      'req',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:P-256',
      '-nodes',
      '-subj',
      `/CN=${name}`,
      '-keyout',
      f(`${name}.key`),
      '-out',
      f(`${name}.csr`),
    );
    writeFileSync(f(`${name}.ext`), 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n');
    ssl(
      'x509',
      '-req',
      '-in',
      f(`${name}.csr`),
      '-CA',
      f(`${issuer}.pem`),
      '-CAkey',
      f(`${issuer}.key`),
      '-CAcreateserial',
      '-days',
      '2',
      '-extfile',
      f(`${name}.ext`),
      '-out',
      f(`${name}.pem`),
    );
  };
  ca('vimmon-ca');
  leaf('vimmon', 'vimmon-ca');
  ca('other-ca');
  leaf('stranger', 'other-ca');
  return {
    dir,
    ca: readFileSync(f('vimmon-ca.pem')),
    cert: readFileSync(f('vimmon.pem')),
    key: readFileSync(f('vimmon.key')),
    files: { cert: f('vimmon.pem'), key: f('vimmon.key'), ca: f('vimmon-ca.pem') },
    stranger: { cert: readFileSync(f('stranger.pem')), key: readFileSync(f('stranger.key')) },
    remove: () => rmSync(dir, { recursive: true, force: true }),
  };
}

/** The script operators run; tests run the same one. */
export const makeCertsScript = fileURLToPath(new URL('../../deploy/make-certs.sh', import.meta.url));

export const vimmonRoles = ['server', 'conductor', 'executor', 'inspector', 'monitor'] as const;
export type VimmonRole = (typeof vimmonRoles)[number];

export interface KeyPair {
  cert: Buffer;
  key: Buffer;
}

export interface RoleCertificate extends KeyPair {
  files: { cert: string; key: string };
}

export interface RoleCertificates {
  dir: string;
  /** The trust domain of the SPIFFE ids, e.g. vimmon.local. */
  trustDomain: string;
  ca: Buffer;
  /** NAME.pem and NAME.key as make-certs.sh wrote them; URI SAN spiffe://TD/vimmon/NAME. */
  role(name: VimmonRole): RoleCertificate;
  files: { ca: string };
  /** Signed by the CA, CN=some-monitoring-dashboard, DNS and IP SANs but no URI SAN. */
  noRole: KeyPair;
  /** Signed by the CA, URI SAN spiffe://elsewhere.example/vimmon/executor. */
  otherTrustDomain: KeyPair;
  /** From another CA, URI SAN spiffe://TD/vimmon/executor. */
  stranger: KeyPair;
  remove(): void;
}

/**
 * Runs deploy/make-certs.sh into a fresh temporary folder, then adds with openssl three
 * certificates no role should accept: one without a URI SAN, one from another trust
 * domain (both signed by the same CA) and one from another CA naming a real role.
 */
export function makeRoleCertificates(trustDomain = 'vimmon.local'): RoleCertificates {
  const dir = mkdtempSync(path.join(tmpdir(), 'vimmon-roles-'));
  try {
    execFileSync('bash', [makeCertsScript, dir, '--trust-domain', trustDomain, '--days', '2'], { stdio: 'pipe' });
    const f = (n: string) => path.join(dir, n);
    const ssl = (...args: string[]) => execFileSync('openssl', args, { stdio: 'pipe' });
    const newKey = (name: string) => ssl('genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', f(`${name}.key`));
    const leaf = (name: string, cn: string, issuer: string, san: string) => {
      newKey(name);
      ssl('req', '-new', '-key', f(`${name}.key`), '-subj', `/CN=${cn}`, '-out', f(`${name}.csr`));
      writeFileSync(
        f(`${name}.ext`),
        `basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth,clientAuth\nsubjectAltName=${san}\n`,
      );
      const serial = `0x${randomBytes(16).toString('hex')}`;
      ssl(
        'x509',
        '-req',
        '-in',
        f(`${name}.csr`),
        '-CA',
        f(`${issuer}.pem`),
        '-CAkey',
        f(`${issuer}.key`),
        '-set_serial',
        serial,
        '-days',
        '2',
        '-extfile',
        f(`${name}.ext`),
        '-out',
        f(`${name}.pem`),
      );
      rmSync(f(`${name}.csr`));
      rmSync(f(`${name}.ext`));
    };
    const local = 'DNS:localhost,IP:127.0.0.1,IP:::1';
    leaf('no-role', 'some-monitoring-dashboard', 'ca', local);
    leaf('other-trust-domain', 'vimmon-executor', 'ca', `URI:spiffe://elsewhere.example/vimmon/executor,${local}`);
    newKey('stranger-ca');
    ssl(
      'req',
      '-x509',
      '-new',
      '-key',
      f('stranger-ca.key'),
      '-days',
      '2',
      '-subj',
      `/CN=vimmon CA (${trustDomain})`,
      '-out',
      f('stranger-ca.pem'),
    );
    leaf('stranger', 'vimmon-executor', 'stranger-ca', `URI:spiffe://${trustDomain}/vimmon/executor,${local}`);
    const pair = (name: string): KeyPair => ({ cert: readFileSync(f(`${name}.pem`)), key: readFileSync(f(`${name}.key`)) });
    return {
      dir,
      trustDomain,
      ca: readFileSync(f('ca.pem')),
      role(name) {
        if (!(vimmonRoles as readonly string[]).includes(name)) throw new Error(`not a vimmon role: ${name}`);
        return { ...pair(name), files: { cert: f(`${name}.pem`), key: f(`${name}.key`) } };
      },
      files: { ca: f('ca.pem') },
      noRole: pair('no-role'),
      otherTrustDomain: pair('other-trust-domain'),
      stranger: pair('stranger'),
      remove: () => rmSync(dir, { recursive: true, force: true }),
    };
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
}
