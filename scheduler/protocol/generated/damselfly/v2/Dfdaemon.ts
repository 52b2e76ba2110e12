// Original file: scheduler/protocol/damselfly.proto

import type * as grpc from '@grpc/grpc-js'
import type { MethodDefinition } from '@grpc/proto-loader'
import type { DeleteLocalTaskRequest as _damselfly_v2_DeleteLocalTaskRequest, DeleteLocalTaskRequest__Output as _damselfly_v2_DeleteLocalTaskRequest__Output } from '../../damselfly/v2/DeleteLocalTaskRequest.js';
import type { DownloadTaskRequest as _damselfly_v2_DownloadTaskRequest, DownloadTaskRequest__Output as _damselfly_v2_DownloadTaskRequest__Output } from '../../damselfly/v2/DownloadTaskRequest.js';
import type { DownloadTaskResponse as _damselfly_v2_DownloadTaskResponse, DownloadTaskResponse__Output as _damselfly_v2_DownloadTaskResponse__Output } from '../../damselfly/v2/DownloadTaskResponse.js';
import type { Empty as _damselfly_v2_Empty, Empty__Output as _damselfly_v2_Empty__Output } from '../../damselfly/v2/Empty.js';
import type { StatLocalTaskRequest as _damselfly_v2_StatLocalTaskRequest, StatLocalTaskRequest__Output as _damselfly_v2_StatLocalTaskRequest__Output } from '../../damselfly/v2/StatLocalTaskRequest.js';
import type { StatLocalTaskResponse as _damselfly_v2_StatLocalTaskResponse, StatLocalTaskResponse__Output as _damselfly_v2_StatLocalTaskResponse__Output } from '../../damselfly/v2/StatLocalTaskResponse.js';

export interface DfdaemonClient extends grpc.Client {
  /**
   * Evicts the task from the agent's cache; NOT_FOUND when absent.
   */
  DeleteTask(argument: _damselfly_v2_DeleteLocalTaskRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_damselfly_v2_Empty__Output>): grpc.ClientUnaryCall;
  DeleteTask(argument: _damselfly_v2_DeleteLocalTaskRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_damselfly_v2_Empty__Output>): grpc.ClientUnaryCall;
  DeleteTask(argument: _damselfly_v2_DeleteLocalTaskRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_damselfly_v2_Empty__Output>): grpc.ClientUnaryCall;
  DeleteTask(argument: _damselfly_v2_DeleteLocalTaskRequest, callback: grpc.requestCallback<_damselfly_v2_Empty__Output>): grpc.ClientUnaryCall;
  /**
   * Evicts the task from the agent's cache; NOT_FOUND when absent.
   */
  deleteTask(argument: _damselfly_v2_DeleteLocalTaskRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_damselfly_v2_Empty__Output>): grpc.ClientUnaryCall;
  deleteTask(argument: _damselfly_v2_DeleteLocalTaskRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_damselfly_v2_Empty__Output>): grpc.ClientUnaryCall;
  deleteTask(argument: _damselfly_v2_DeleteLocalTaskRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_damselfly_v2_Empty__Output>): grpc.ClientUnaryCall;
  deleteTask(argument: _damselfly_v2_DeleteLocalTaskRequest, callback: grpc.requestCallback<_damselfly_v2_Empty__Output>): grpc.ClientUnaryCall;
  
  /**
   * Download a task into the local cache (seed-peer trigger and preheat). Streams progress and
   * ends when the task is complete; errors end the stream with a gRPC status.
   */
  DownloadTask(argument: _damselfly_v2_DownloadTaskRequest, metadata: grpc.Metadata, options?: grpc.CallOptions): grpc.ClientReadableStream<_damselfly_v2_DownloadTaskResponse__Output>;
  DownloadTask(argument: _damselfly_v2_DownloadTaskRequest, options?: grpc.CallOptions): grpc.ClientReadableStream<_damselfly_v2_DownloadTaskResponse__Output>;
  /**
   * Download a task into the local cache (seed-peer trigger and preheat). Streams progress and
   * ends when the task is complete; errors end the stream with a gRPC status.
   */
  downloadTask(argument: _damselfly_v2_DownloadTaskRequest, metadata: grpc.Metadata, options?: grpc.CallOptions): grpc.ClientReadableStream<_damselfly_v2_DownloadTaskResponse__Output>;
  downloadTask(argument: _damselfly_v2_DownloadTaskRequest, options?: grpc.CallOptions): grpc.ClientReadableStream<_damselfly_v2_DownloadTaskResponse__Output>;
  
  /**
   * NOT_FOUND when the agent holds nothing of the task.
   */
  StatTask(argument: _damselfly_v2_StatLocalTaskRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_damselfly_v2_StatLocalTaskResponse__Output>): grpc.ClientUnaryCall;
  StatTask(argument: _damselfly_v2_StatLocalTaskRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_damselfly_v2_StatLocalTaskResponse__Output>): grpc.ClientUnaryCall;
  StatTask(argument: _damselfly_v2_StatLocalTaskRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_damselfly_v2_StatLocalTaskResponse__Output>): grpc.ClientUnaryCall;
  StatTask(argument: _damselfly_v2_StatLocalTaskRequest, callback: grpc.requestCallback<_damselfly_v2_StatLocalTaskResponse__Output>): grpc.ClientUnaryCall;
  /**
   * NOT_FOUND when the agent holds nothing of the task.
   */
  statTask(argument: _damselfly_v2_StatLocalTaskRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_damselfly_v2_StatLocalTaskResponse__Output>): grpc.ClientUnaryCall;
  statTask(argument: _damselfly_v2_StatLocalTaskRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_damselfly_v2_StatLocalTaskResponse__Output>): grpc.ClientUnaryCall;
  statTask(argument: _damselfly_v2_StatLocalTaskRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_damselfly_v2_StatLocalTaskResponse__Output>): grpc.ClientUnaryCall;
  statTask(argument: _damselfly_v2_StatLocalTaskRequest, callback: grpc.requestCallback<_damselfly_v2_StatLocalTaskResponse__Output>): grpc.ClientUnaryCall;
  
}

export interface DfdaemonHandlers extends grpc.UntypedServiceImplementation {
  /**
   * Evicts the task from the agent's cache; NOT_FOUND when absent.
   */
  DeleteTask: grpc.handleUnaryCall<_damselfly_v2_DeleteLocalTaskRequest__Output, _damselfly_v2_Empty>;
  
  /**
   * Download a task into the local cache (seed-peer trigger and preheat). Streams progress and
   * ends when the task is complete; errors end the stream with a gRPC status.
   */
  DownloadTask: grpc.handleServerStreamingCall<_damselfly_v2_DownloadTaskRequest__Output, _damselfly_v2_DownloadTaskResponse>;
  
  /**
   * NOT_FOUND when the agent holds nothing of the task.
   */
  StatTask: grpc.handleUnaryCall<_damselfly_v2_StatLocalTaskRequest__Output, _damselfly_v2_StatLocalTaskResponse>;
  
}

export interface DfdaemonDefinition extends grpc.ServiceDefinition {
  DeleteTask: MethodDefinition<_damselfly_v2_DeleteLocalTaskRequest, _damselfly_v2_Empty, _damselfly_v2_DeleteLocalTaskRequest__Output, _damselfly_v2_Empty__Output>
  DownloadTask: MethodDefinition<_damselfly_v2_DownloadTaskRequest, _damselfly_v2_DownloadTaskResponse, _damselfly_v2_DownloadTaskRequest__Output, _damselfly_v2_DownloadTaskResponse__Output>
  StatTask: MethodDefinition<_damselfly_v2_StatLocalTaskRequest, _damselfly_v2_StatLocalTaskResponse, _damselfly_v2_StatLocalTaskRequest__Output, _damselfly_v2_StatLocalTaskResponse__Output>
}
