// Original file: scheduler/protocol/damselfly.proto


export interface EmptyTaskResponse {
}

export interface EmptyTaskResponse__Output {
}
