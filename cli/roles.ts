// Roles that the CLI starts beyond the VIM monitor mesh.
import type { Config } from '../common/config.js';
import type { Logger } from '../common/logger.js';
import type { RunningRole } from '../common/role.js';
import type { Orm } from '../db/connection.js';

export const roleNames = ['server', 'conductor', 'executor', 'inspector'] as const;
export type RoleName = (typeof roleNames)[number];

export interface ExtensionContext {
  config: Config;
  logger: Logger;
  orm: Orm | undefined;
  databaseUrl: string | undefined;
}

export async function startRoleExtensions(roles: RoleName[], _ctx: ExtensionContext): Promise<RunningRole[]> {
  if (roles.includes('inspector')) {
    _ctx.logger.warn('the inspector role is not available in this build');
  }
  return [];
}
