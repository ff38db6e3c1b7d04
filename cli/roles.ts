export const roleNames = ['server', 'conductor', 'executor', 'inspector'] as const;
export type RoleName = (typeof roleNames)[number];
