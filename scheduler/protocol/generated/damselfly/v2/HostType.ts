// Original file: scheduler/protocol/damselfly.proto

export const HostType = {
  NORMAL: 'NORMAL',
  SUPER_SEED: 'SUPER_SEED',
  STRONG_SEED: 'STRONG_SEED',
  WEAK_SEED: 'WEAK_SEED',
} as const;

export type HostType =
  | 'NORMAL'
  | 0
  | 'SUPER_SEED'
  | 1
  | 'STRONG_SEED'
  | 2
  | 'WEAK_SEED'
  | 3

export type HostType__Output = typeof HostType[keyof typeof HostType]
