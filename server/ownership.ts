// Who may see and change which VIM. A VIM belongs to the project of whoever
// registered it (Tacker's tenant_id): its members may change it, its readers
// may see it, an admin may do everything. A caller who may not see a VIM is
// told PERMISSION_DENIED whether or not it exists, so ids of other projects'
// VIMs cannot be probed; only those who may see it learn it is gone.
import { InvalidArgumentError, NotFoundError, PermissionDeniedError } from '../common/errors.js';
import { holdsIn, isAdmin, type Principal } from '../common/auth/principal.js';

/** The owner project of a new VIM: the one asked for, or the caller's only project. */
export function ownerOfNewVim(caller: Principal, requested: string, field = 'owner_project'): string {
  if (requested.length > 255) throw new InvalidArgumentError(field, 'longer than 255 characters');
  if (/[\u0000-\u001f\u007f]/.test(requested)) throw new InvalidArgumentError(field, 'must not contain control characters');
  if (requested) {
    if (!holdsIn(caller, 'member', requested))
      throw new PermissionDeniedError(`${field}: ${caller.name} is not a member of project ${requested}`);
    return requested;
  }
  if (isAdmin(caller) || caller.projects.length === 0) return caller.projects.length === 1 ? caller.projects[0]! : '';
  if (caller.projects.length > 1) throw new InvalidArgumentError(field, `required: ${caller.name} is a member of several projects`);
  return caller.projects[0]!;
}

export interface OwnedRow {
  ownerProject: string;
  deletedAt?: Date | null;
}

/**
 * Checks that `caller` holds `role` on a VIM row (undefined: no such id) and
 * that it is live; otherwise throws PERMISSION_DENIED or NOT_FOUND as above.
 */
export function requireAccess<R extends OwnedRow>(
  caller: Principal,
  role: 'member' | 'reader',
  id: string,
  row: R | undefined | null,
  allowDeleted = false,
): R {
  if (!row || !holdsIn(caller, role, row.ownerProject)) {
    if (isAdmin(caller)) throw new NotFoundError(`VIM ${id} not found`);
    throw new PermissionDeniedError(`${caller.name} may not ${role === 'member' ? 'change' : 'see'} VIM ${id}`);
  }
  if (row.deletedAt && !allowDeleted) throw new NotFoundError(`VIM ${id} not found`);
  return row;
}
