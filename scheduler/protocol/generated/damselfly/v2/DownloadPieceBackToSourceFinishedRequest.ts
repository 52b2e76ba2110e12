// Original file: scheduler/protocol/damselfly.proto

import type { Piece as _damselfly_v2_Piece, Piece__Output as _damselfly_v2_Piece__Output } from '../../damselfly/v2/Piece.js';

export interface DownloadPieceBackToSourceFinishedRequest {
  'piece'?: (_damselfly_v2_Piece | null);
}

export interface DownloadPieceBackToSourceFinishedRequest__Output {
  'piece': (_damselfly_v2_Piece__Output | null);
}
