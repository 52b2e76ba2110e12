// Original file: scheduler/protocol/damselfly.proto

import type { TrafficType as _damselfly_v2_TrafficType, TrafficType__Output as _damselfly_v2_TrafficType__Output } from '../../damselfly/v2/TrafficType.js';
import type { Long } from '@grpc/proto-loader';

/**
 * A piece as the scheduler and peers know it. `digest` is "sha256:<hex>" of the piece bytes, set by
 * whoever read the piece from the origin; it travels through the scheduler to every other peer.
 */
export interface Piece {
  'number'?: (number);
  'parent_id'?: (string);
  'offset'?: (number | string | Long);
  'length'?: (number | string | Long);
  'digest'?: (string);
  'traffic_type'?: (_damselfly_v2_TrafficType);
  'cost_ms'?: (number | string | Long);
  /**
   * Damselfly: sha256 of each of the piece's blocks (agent/download/blocks.ts: BLOCKS_PER_PIECE blocks of
   * ceil(piece_length / BLOCKS_PER_PIECE) bytes, the last one shorter), the raw 32-byte digests
   * concatenated. Set by the peer that read the piece from the origin; lets peers check and forward
   * a piece block by block. Empty when unknown.
   */
  'block_digests'?: (Buffer | Uint8Array | string);
}

/**
 * A piece as the scheduler and peers know it. `digest` is "sha256:<hex>" of the piece bytes, set by
 * whoever read the piece from the origin; it travels through the scheduler to every other peer.
 */
export interface Piece__Output {
  'number': (number);
  'parent_id': (string);
  'offset': (number);
  'length': (number);
  'digest': (string);
  'traffic_type': (_damselfly_v2_TrafficType__Output);
  'cost_ms': (number);
  /**
   * Damselfly: sha256 of each of the piece's blocks (agent/download/blocks.ts: BLOCKS_PER_PIECE blocks of
   * ceil(piece_length / BLOCKS_PER_PIECE) bytes, the last one shorter), the raw 32-byte digests
   * concatenated. Set by the peer that read the piece from the origin; lets peers check and forward
   * a piece block by block. Empty when unknown.
   */
  'block_digests': (Buffer);
}
