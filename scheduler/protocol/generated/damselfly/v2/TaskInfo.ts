// Original file: scheduler/protocol/damselfly.proto

import type { Piece as _damselfly_v2_Piece, Piece__Output as _damselfly_v2_Piece__Output } from '../../damselfly/v2/Piece.js';
import type { Long } from '@grpc/proto-loader';

/**
 * Task metadata the scheduler relays to peers: what the first reader of the origin learned.
 */
export interface TaskInfo {
  'id'?: (string);
  /**
   * -1 while unknown
   */
  'content_length'?: (number | string | Long);
  'piece_length'?: (number | string | Long);
  'piece_count'?: (number);
  /**
   * pieces whose digest is known (read from the origin by some peer)
   */
  'pieces'?: (_damselfly_v2_Piece)[];
  'state'?: (string);
  'peer_count'?: (number);
}

/**
 * Task metadata the scheduler relays to peers: what the first reader of the origin learned.
 */
export interface TaskInfo__Output {
  'id': (string);
  /**
   * -1 while unknown
   */
  'content_length': (number);
  'piece_length': (number);
  'piece_count': (number);
  /**
   * pieces whose digest is known (read from the origin by some peer)
   */
  'pieces': (_damselfly_v2_Piece__Output)[];
  'state': (string);
  'peer_count': (number);
}
