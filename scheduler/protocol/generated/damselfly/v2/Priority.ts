// Original file: scheduler/protocol/damselfly.proto

/**
 * Priority as in Dragonfly: LEVEL6 is the default for proxy/dfget downloads.
 */
export const Priority = {
  LEVEL0: 'LEVEL0',
  LEVEL1: 'LEVEL1',
  LEVEL2: 'LEVEL2',
  LEVEL3: 'LEVEL3',
  LEVEL4: 'LEVEL4',
  LEVEL5: 'LEVEL5',
  LEVEL6: 'LEVEL6',
} as const;

/**
 * Priority as in Dragonfly: LEVEL6 is the default for proxy/dfget downloads.
 */
export type Priority =
  | 'LEVEL0'
  | 0
  | 'LEVEL1'
  | 1
  | 'LEVEL2'
  | 2
  | 'LEVEL3'
  | 3
  | 'LEVEL4'
  | 4
  | 'LEVEL5'
  | 5
  | 'LEVEL6'
  | 6

/**
 * Priority as in Dragonfly: LEVEL6 is the default for proxy/dfget downloads.
 */
export type Priority__Output = typeof Priority[keyof typeof Priority]
