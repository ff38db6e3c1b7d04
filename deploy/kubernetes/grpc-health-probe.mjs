// grpc.health.v1 Check of one role, over the role's own mutual TLS, for Kubernetes exec probes.
// The kubelet's built-in grpc probe speaks plaintext only, and a role listening beyond loopback
// serves TLS (README.md: Securing a deployment). Plain JavaScript on @grpc/grpc-js alone, so it
// runs in the image as it is (no build step, no TypeScript loader).
//
//   node grpc-health-probe.mjs --role ROLE --port PORT --tls-dir DIR [--any-answer]
//
// Calls 127.0.0.1:PORT (every make-certs.sh certificate names localhost) with DIR/ca.pem and
// DIR/ROLE.pem/.key, asking for the whole server (service ""). Exit 0: SERVING, or with
// --any-answer any status at all (liveness: the process answers); 1: anything else, within 3 s.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { credentials, makeGenericClientConstructor } from '@grpc/grpc-js';

const servingStatus = ['UNKNOWN', 'SERVING', 'NOT_SERVING', 'SERVICE_UNKNOWN'];

function fail(message) {
  console.error(`grpc-health-probe: ${message}`);
  process.exit(1);
}

let values;
try {
  ({ values } = parseArgs({
    options: {
      role: { type: 'string' },
      port: { type: 'string' },
      'tls-dir': { type: 'string' },
      'any-answer': { type: 'boolean', default: false },
    },
    strict: true,
  }));
} catch (err) {
  fail(err.message);
}
const { role, port, 'tls-dir': tlsDir, 'any-answer': anyAnswer } = values;
if (!role || !/^[a-z]+$/.test(role)) fail('--role: expected a role name such as server');
if (!port || !/^\d{1,5}$/.test(port) || Number(port) > 65_535) fail('--port: expected a port from 0 to 65535');
if (!tlsDir) fail('--tls-dir: expected the folder of ca.pem and ROLE.pem/.key');

let tls;
try {
  const read = (name) => readFileSync(path.join(tlsDir, name));
  tls = credentials.createSsl(read('ca.pem'), read(`${role}.key`), read(`${role}.pem`));
} catch (err) {
  fail(`--tls-dir: ${err.message}`);
}

// HealthCheckRequest { service: "" } is the empty message; HealthCheckResponse is field 1, a varint.
const Health = makeGenericClientConstructor(
  {
    check: {
      path: '/grpc.health.v1.Health/Check',
      requestStream: false,
      responseStream: false,
      requestSerialize: () => Buffer.alloc(0),
      requestDeserialize: () => ({}),
      responseSerialize: () => Buffer.alloc(0),
      responseDeserialize: (bytes) => ({ status: bytes.length >= 2 && bytes[0] === 0x08 ? bytes[1] : 0 }),
    },
  },
  'Health',
);
// 127.0.0.1 is dialled, "localhost" checked: a TLS server name may not be an IP address (RFC 6066).
const client = new Health(`127.0.0.1:${port}`, tls, {
  'grpc.ssl_target_name_override': 'localhost',
  'grpc.default_authority': 'localhost',
});
client.check({}, { deadline: Date.now() + 3_000 }, (err, reply) => {
  client.close();
  if (err) fail(`${role} at 127.0.0.1:${port}: ${err.message}`);
  const status = servingStatus[reply.status] ?? String(reply.status);
  if (status !== 'SERVING' && !anyAnswer) fail(`${role} at 127.0.0.1:${port}: ${status}`);
  console.log(`${role} at 127.0.0.1:${port}: ${status}`);
});
