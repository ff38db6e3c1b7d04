// A VIM's CA certificates (Tacker's ssl_ca_cert): PEM text that the probes
// trust for that VIM only. Checked where it comes in (the Tacker server) and
// where it is used (the executor), by the same rule: nothing but PEM
// CERTIFICATE blocks, each a certificate OpenSSL can read, bounded in size
// and number, so that a bad one is refused naming the field instead of
// failing every probe round later.
import { X509Certificate } from 'node:crypto';
import { InvalidArgumentError } from './errors.js';

export const caCertificateLimits = { bytes: 64 * 1024, certificates: 16 };

const block = /-----BEGIN CERTIFICATE-----\r?\n([A-Za-z0-9+/=\r\n]+?)-----END CERTIFICATE-----/g;

/** The PEM text as given, once every block in it is a readable certificate; throws InvalidArgumentError naming `field`. */
export function checkCaCertificates(pem: string, field: string): string {
  if (Buffer.byteLength(pem) > caCertificateLimits.bytes)
    throw new InvalidArgumentError(field, `longer than ${caCertificateLimits.bytes} bytes`);
  let count = 0;
  let end = 0;
  for (const m of pem.matchAll(block)) {
    if (pem.slice(end, m.index).trim() !== '')
      throw new InvalidArgumentError(field, 'expected only PEM certificates ("-----BEGIN CERTIFICATE-----" blocks), found other text');
    count++;
    if (count > caCertificateLimits.certificates)
      throw new InvalidArgumentError(field, `more than ${caCertificateLimits.certificates} certificates`);
    try {
      new X509Certificate(m[0]);
    } catch {
      throw new InvalidArgumentError(field, `certificate ${count} is not a valid X.509 certificate`);
    }
    end = m.index + m[0].length;
  }
  if (pem.slice(end).trim() !== '')
    throw new InvalidArgumentError(field, 'expected only PEM certificates ("-----BEGIN CERTIFICATE-----" blocks), found other text');
  if (count === 0) throw new InvalidArgumentError(field, 'no PEM certificate in it');
  return pem;
}
