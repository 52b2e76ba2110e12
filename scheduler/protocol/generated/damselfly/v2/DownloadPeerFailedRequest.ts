// Original file: scheduler/protocol/damselfly.proto


export interface DownloadPeerFailedRequest {
  'description'?: (string);
}

export interface DownloadPeerFailedRequest__Output {
  'description': (string);
}
