// Original file: scheduler/protocol/damselfly.proto


export interface DownloadPieceBackToSourceFailedRequest {
  'piece_number'?: (number);
  'description'?: (string);
}

export interface DownloadPieceBackToSourceFailedRequest__Output {
  'piece_number': (number);
  'description': (string);
}
