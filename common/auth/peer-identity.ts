// What TLS verified of a client's certificate, handed to the nice-grpc
// middleware as metadata (nice-grpc's call context has no view of the TLS
// session). A client cannot forge it: any header of that name it sends is
// removed before the verified value, if any, is set.
import { ServerInterceptingCall, type ServerInterceptor } from '@grpc/grpc-js';
import type { PeerCertificate } from 'node:tls';
import { spiffeIdOf } from './spiffe.js';

export const peerIdentityHeader = 'x-vimmon-peer-identity';

/** A verified certificate's identity: its SPIFFE id, or `subject:<CN>` when it has none. */
export function identityOfCertificate(cert: Pick<PeerCertificate, 'subjectaltname' | 'subject'> | undefined): string | undefined {
  if (!cert) return undefined;
  const id = spiffeIdOf(cert.subjectaltname);
  if (id) return id;
  const cn = cert.subject?.CN;
  return `subject:${(Array.isArray(cn) ? cn.join(',') : cn) ?? ''}`;
}

export const peerIdentityInterceptor: ServerInterceptor = (_method, call) =>
  new ServerInterceptingCall(call, {
    start(next) {
      next({
        onReceiveMetadata(metadata, forward) {
          metadata.remove(peerIdentityHeader);
          // getAuthContext() is empty unless the certificate verified against the CA.
          const identity = identityOfCertificate(call.getAuthContext().sslPeerCertificate);
          if (identity) metadata.set(peerIdentityHeader, identity);
          forward(metadata);
        },
      });
    },
  });
