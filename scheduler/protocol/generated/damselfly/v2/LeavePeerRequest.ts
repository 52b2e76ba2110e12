// Original file: scheduler/protocol/damselfly.proto


export interface LeavePeerRequest {
}

export interface LeavePeerRequest__Output {
}
