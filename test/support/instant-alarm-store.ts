import type { AlarmStore } from '../../inspector/alarm-store.js';

/** An alarm store that answers at once and keeps nothing: ids counted from 1, every save accepted. */
export function instantAlarmStore(): AlarmStore {
  let next = 1;
  return {
    reserveIds: async (n: number) => Array.from({ length: n }, () => next++),
    lastAlarmId: async () => 0,
    save: async () => {},
    quarantine: async () => true,
    quarantinedCount: async () => 0,
    read: async () => [],
    loadHosts: async () => [],
  };
}
