// Roles beyond the VIM monitor mesh whose README examples test/readme.test.ts runs.
import type { ExecutionContext } from 'ava';
import type { TsProtoServiceDefinition } from 'nice-grpc';
import { InspectorServiceDefinition } from '../../gen/vimmon/inspector/v1/inspector_service.js';
import { startInspector } from '../../inspector/main.js';
import { testLogger } from './logger.js';
import type { Mesh } from './mesh.js';

export const readmeExtraDefinitions: TsProtoServiceDefinition[] = [InspectorServiceDefinition];

export async function readmeExtraRoles(t: ExecutionContext, mesh: Mesh): Promise<{ ports: Array<[number, number]> }> {
  const inspector = await startInspector({
    logger: testLogger(),
    orm: mesh.db.orm,
    databaseUrl: mesh.db.url,
    address: '127.0.0.1:0',
    httpAddress: '127.0.0.1:0',
    env: {},
    resyncIntervalMs: 60_000,
  });
  t.teardown(() => inspector.stop());
  return {
    ports: [
      [50054, Number(inspector.address.split(':').at(-1))],
      [12345, Number(inspector.httpAddress.split(':').at(-1))],
    ],
  };
}
