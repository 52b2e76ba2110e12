// Original file: scheduler/protocol/damselfly.proto


export interface StatLocalTaskRequest {
  'task_id'?: (string);
}

export interface StatLocalTaskRequest__Output {
  'task_id': (string);
}
