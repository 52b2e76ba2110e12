// Original file: scheduler/protocol/damselfly.proto


export interface DeleteLocalTaskRequest {
  'task_id'?: (string);
}

export interface DeleteLocalTaskRequest__Output {
  'task_id': (string);
}
