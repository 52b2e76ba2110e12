// Original file: scheduler/protocol/damselfly.proto


export interface DeleteTaskRequest {
  'task_id'?: (string);
}

export interface DeleteTaskRequest__Output {
  'task_id': (string);
}
