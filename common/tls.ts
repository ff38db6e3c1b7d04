// TLS for every gRPC hop, from three PEM files. With a certificate and key a
// role serves TLS; with a CA it verifies the servers it calls and requires
// clients to present a certificate signed by that CA (mutual TLS). Roles that
// call others present their own certificate. Without any, everything is
// plaintext (a single machine, a lab).
import { readFileSync } from 'node:fs';
import { credentials as channelCredentialsFactory, experimental, ServerCredentials, type ChannelCredentials } from '@grpc/grpc-js';

export interface TlsFiles {
  certFile?: string;
  keyFile?: string;
  caFile?: string;
}

export interface Tls {
  cert?: Buffer;
  key?: Buffer;
  ca?: Buffer;
  /**
   * With a CA: 'require' refuses a client without a certificate at the handshake
   * (mutual TLS only); 'optional' (when people authenticate with tokens)
   * verifies a certificate a client presents and lets others in without one,
   * to be judged by their token. Default 'require'.
   */
  clientCertificates?: 'require' | 'optional';
}

function read(file: string, variable: string): Buffer {
  try {
    return readFileSync(file);
  } catch (err) {
    throw new Error(`${variable}: cannot read ${file}: ${(err as Error).message}`);
  }
}

export function loadTls(files: TlsFiles): Tls | undefined {
  if (!files.certFile && !files.keyFile && !files.caFile) return undefined;
  if (!!files.certFile !== !!files.keyFile) throw new Error('VIMMON_TLS_CERT and VIMMON_TLS_KEY go together');
  return {
    cert: files.certFile ? read(files.certFile, 'VIMMON_TLS_CERT') : undefined,
    key: files.keyFile ? read(files.keyFile, 'VIMMON_TLS_KEY') : undefined,
    ca: files.caFile ? read(files.caFile, 'VIMMON_TLS_CA') : undefined,
  };
}

export function serverCredentials(tls: Tls | undefined): ServerCredentials {
  if (!tls?.cert || !tls.key) return ServerCredentials.createInsecure();
  if (tls.ca && tls.clientCertificates === 'optional') {
    // createSsl can only require a client certificate or not ask for one; the
    // certificate-provider credentials ask, verify, and let a client without one in
    // (grpc-js then reports no peer certificate for it).
    const provider = staticCertificates(tls.ca, tls.cert, tls.key);
    return experimental.createCertificateProviderServerCredentials(provider, provider, false);
  }
  return ServerCredentials.createSsl(tls.ca ?? null, [{ cert_chain: tls.cert, private_key: tls.key }], tls.ca !== undefined);
}

type CertificateProvider = Parameters<typeof experimental.createCertificateProviderServerCredentials>[0];

/** Fixed certificates. Told after the registration returns: grpc-js adds its own watcher only then. */
function staticCertificates(ca: Buffer, certificate: Buffer, privateKey: Buffer): CertificateProvider {
  return {
    addCaCertificateListener: (listener) => queueMicrotask(() => listener({ caCertificate: ca })),
    removeCaCertificateListener: () => {},
    addIdentityCertificateListener: (listener) => queueMicrotask(() => listener({ certificate, privateKey })),
    removeIdentityCertificateListener: () => {},
  };
}

/** undefined: plaintext. */
export function channelCredentials(tls: Tls | undefined): ChannelCredentials | undefined {
  if (!tls) return undefined;
  return channelCredentialsFactory.createSsl(tls.ca ?? null, tls.key ?? null, tls.cert ?? null);
}
