// A throw-away CA and certificates for 127.0.0.1, made with the openssl command.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

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
  const ca = (name: string) => ssl('req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '2', '-subj', `/CN=${name}`, '-keyout', f(`${name}.key`), '-out', f(`${name}.pem`));
  const leaf = (name: string, issuer: string) => {
    ssl('req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-subj', `/CN=${name}`, '-keyout', f(`${name}.key`), '-out', f(`${name}.csr`));
    writeFileSync(f(`${name}.ext`), 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n');
    ssl('x509', '-req', '-in', f(`${name}.csr`), '-CA', f(`${issuer}.pem`), '-CAkey', f(`${issuer}.key`), '-CAcreateserial', '-days', '2', '-extfile', f(`${name}.ext`), '-out', f(`${name}.pem`));
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
