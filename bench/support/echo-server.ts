// The baseline the conductor is measured against: a bare grpc-js server
// answering UpdateVim with the status it was sent — same path, same messages,
// same codecs, none of the conductor's work (nice-grpc middleware, validation,
// PostgreSQL). It also answers grpc.health.v1.Health/Check SERVING, so the
// HAProxy template's health check admits it.
import * as grpc from '@grpc/grpc-js';
import { HealthCheckRequest, HealthCheckResponse, HealthCheckResponse_ServingStatus } from '../../gen/grpc/health/v1/health.js';
import { UpdateVimRequest, UpdateVimResponse } from '../../gen/vimmon/conductor/v1/conductor.js';

export interface EchoServer {
  address: string;
  stop(): Promise<void>;
}

function unary<Req, Res>(
  path: string,
  request: { encode(m: Req): { finish(): Uint8Array }; decode(b: Uint8Array): Req },
  response: { encode(m: Res): { finish(): Uint8Array }; decode(b: Uint8Array): Res },
): grpc.MethodDefinition<Req, Res> {
  return {
    path,
    requestStream: false,
    responseStream: false,
    requestSerialize: (m) => Buffer.from(request.encode(m).finish()),
    requestDeserialize: (b) => request.decode(b),
    responseSerialize: (m) => Buffer.from(response.encode(m).finish()),
    responseDeserialize: (b) => response.decode(b),
  };
}

export async function startEchoServer(address = '127.0.0.1:0'): Promise<EchoServer> {
  const server = new grpc.Server();
  server.addService(
    { UpdateVim: unary('/vimmon.conductor.v1.VimMonitorAction2Conductor/UpdateVim', UpdateVimRequest, UpdateVimResponse) },
    {
      UpdateVim: (call: grpc.ServerUnaryCall<UpdateVimRequest, UpdateVimResponse>, callback: grpc.sendUnaryData<UpdateVimResponse>) =>
        callback(null, { status: call.request.status, statusReason: call.request.statusReason }),
    },
  );
  server.addService(
    { Check: unary('/grpc.health.v1.Health/Check', HealthCheckRequest, HealthCheckResponse) },
    {
      Check: (_call: grpc.ServerUnaryCall<HealthCheckRequest, HealthCheckResponse>, callback: grpc.sendUnaryData<HealthCheckResponse>) =>
        callback(null, { status: HealthCheckResponse_ServingStatus.SERVING }),
    },
  );
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync(address, grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
  );
  const host = address.slice(0, address.lastIndexOf(':'));
  return {
    address: `${host}:${port}`,
    stop: () =>
      new Promise<void>((resolve) => {
        const timer = setTimeout(() => server.forceShutdown(), 2_000);
        server.tryShutdown(() => {
          clearTimeout(timer);
          resolve();
        });
      }),
  };
}
