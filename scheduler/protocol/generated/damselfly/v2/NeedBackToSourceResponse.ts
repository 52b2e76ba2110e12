// Original file: scheduler/protocol/damselfly.proto


export interface NeedBackToSourceResponse {
  'description'?: (string);
}

export interface NeedBackToSourceResponse__Output {
  'description': (string);
}
