// Which VMs a host's fault truly affects now, answered from memory: the VMs the
// cache places on the host (kept current by Nova's notifications, so a VM
// evacuated since has moved off it; repaired by the periodic snapshot), with
// the host's state as the fault handler decided it. No Nova call, however many
// VMs: with VIMMON_INSPECTOR_RESET_STATE=off a consumer asks here (or reads
// host_status from Nova) instead of finding each VM in error.
import { NotFoundError, PermissionDeniedError } from '../common/errors.js';
import type { HostRecord } from './alarm-store.js';
import type { FaultHandler, HostVm, HostVmLookup } from './fault.js';
import { firstIndexAbove } from '../common/sorted-index.js';

export type AffectedInstancesTarget = { host: string } | { faultId: string };

export interface AffectedInstancesQuery {
  target: AffectedInstancesTarget;
  /** Only the VMs whose id sorts after this one (the previous page's last). */
  after?: string;
  /** VMs in the page, at most. */
  limit: number;
  /** The caller's readable projects; undefined: every project (admin). */
  projects: ReadonlySet<string> | undefined;
  /** For messages: who asks. */
  callerName: string;
}

export interface AffectedInstancesPage {
  host: string;
  /** The host's state; undefined: the inspector knows nothing of the host, which is up. */
  record: HostRecord | undefined;
  forcedDownAt: Date | undefined;
  /** VMs of the host's current fault the caller may see. */
  faultVmCount: number;
  /** In id order (UTF-16 code units). */
  instances: HostVm[];
  /** More VMs follow the page. */
  more: boolean;
}

export function listAffectedInstances(
  fault: Pick<FaultHandler, 'host' | 'hostOfFault'>,
  vms: HostVmLookup,
  query: AffectedInstancesQuery,
): AffectedInstancesPage {
  const { target, projects } = query;
  let host: string;
  if ('host' in target) host = target.host;
  else {
    const found = fault.hostOfFault(target.faultId);
    if (found === undefined) {
      throw new NotFoundError(
        `fault ${target.faultId} is not the current state of any host the inspector holds (the host changed state since, or it is unknown); ask by host`,
      );
    }
    host = found;
  }
  const view = fault.host(host);
  const visible = (vm: { projectId: string }) => projects === undefined || projects.has(vm.projectId);
  const onHost = vms.vmsOnHost(host).filter(visible);
  const faultVms = (view?.record.instances ?? []).filter(visible);
  // A reader learns of a host only through a VM of theirs on it, now or in its current fault.
  if (projects !== undefined && onHost.length === 0 && faultVms.length === 0) {
    throw new PermissionDeniedError(`${query.callerName} reads no instance on host ${JSON.stringify(host)}`);
  }
  onHost.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  const after = query.after;
  const start = after === undefined ? 0 : firstIndexAbove(onHost, after, (vm) => vm.id);
  const instances = onHost.slice(start, start + query.limit);
  return {
    host,
    record: view?.record,
    forcedDownAt: view?.forcedDownAt,
    faultVmCount: faultVms.length,
    instances,
    more: start + instances.length < onHost.length,
  };
}
