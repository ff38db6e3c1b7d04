// Roles beyond the VIM monitor mesh whose README examples test/readme.test.ts runs.
import type { ExecutionContext } from 'ava';
import type { TsProtoServiceDefinition } from 'nice-grpc';
import type { Mesh } from './mesh.js';

export const readmeExtraDefinitions: TsProtoServiceDefinition[] = [];

export async function readmeExtraRoles(_t: ExecutionContext, _mesh: Mesh): Promise<{ ports: Array<[number, number]> }> {
  return { ports: [] };
}
