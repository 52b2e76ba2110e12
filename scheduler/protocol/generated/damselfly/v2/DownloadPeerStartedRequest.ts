// Original file: scheduler/protocol/damselfly.proto


export interface DownloadPeerStartedRequest {
}

export interface DownloadPeerStartedRequest__Output {
}
