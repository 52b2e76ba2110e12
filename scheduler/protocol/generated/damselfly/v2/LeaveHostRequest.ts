// Original file: scheduler/protocol/damselfly.proto


export interface LeaveHostRequest {
  'id'?: (string);
}

export interface LeaveHostRequest__Output {
  'id': (string);
}
