// Original file: scheduler/protocol/damselfly.proto


export interface StatTaskRequest {
  'task_id'?: (string);
}

export interface StatTaskRequest__Output {
  'task_id': (string);
}
