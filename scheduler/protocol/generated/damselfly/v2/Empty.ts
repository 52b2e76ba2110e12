// Original file: scheduler/protocol/damselfly.proto


export interface Empty {
}

export interface Empty__Output {
}
