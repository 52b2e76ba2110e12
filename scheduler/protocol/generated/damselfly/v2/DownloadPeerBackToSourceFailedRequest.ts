// Original file: scheduler/protocol/damselfly.proto


export interface DownloadPeerBackToSourceFailedRequest {
  'description'?: (string);
}

export interface DownloadPeerBackToSourceFailedRequest__Output {
  'description': (string);
}
