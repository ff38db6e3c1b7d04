// The roles' HTTP endpoints (Doctor's /events and /maintenance, /metrics) meet
// the same authentication as gRPC: a bearer token (Authorization or
// X-Auth-Token) or a client certificate the mesh CA verified. Their HTTPS server
// asks for a certificate without requiring one, since a token may stand in for it.
import { createServer, type IncomingMessage, type RequestListener, type Server } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { TLSSocket } from 'node:tls';
import type { Tls } from '../tls.js';
import type { CallCredentials } from './authenticator.js';
import { identityOfCertificate } from './peer-identity.js';

/** What an HTTP request presents: its token headers, and the identity of a verified client certificate. */
export function httpCredentials(req: IncomingMessage): CallCredentials {
  const header = (name: string) => {
    const v = req.headers[name];
    return Array.isArray(v) ? v[0] : v;
  };
  const socket = req.socket as Partial<TLSSocket>;
  return {
    authorization: header('authorization'),
    authToken: header('x-auth-token'),
    peerIdentity: socket.authorized && socket.getPeerCertificate ? identityOfCertificate(socket.getPeerCertificate()) : undefined,
  };
}

/** HTTPS with the role's certificate when it has one (client certificates asked for, not required), else HTTP. */
export function createHttpEndpointServer(tls: Tls | undefined, onRequest: RequestListener): Server {
  return tls?.cert && tls.key
    ? createHttpsServer(
        { cert: tls.cert, key: tls.key, ca: tls.ca, requestCert: tls.ca !== undefined, rejectUnauthorized: false },
        onRequest,
      )
    : createServer(onRequest);
}
