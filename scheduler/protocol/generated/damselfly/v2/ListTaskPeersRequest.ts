// Original file: scheduler/protocol/damselfly.proto


export interface ListTaskPeersRequest {
  'task_id'?: (string);
}

export interface ListTaskPeersRequest__Output {
  'task_id': (string);
}
