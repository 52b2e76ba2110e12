// Original file: scheduler/protocol/damselfly.proto

import type * as grpc from '@grpc/grpc-js'
import type { MethodDefinition } from '@grpc/proto-loader'
import type { AnnounceHostRequest as _damselfly_v2_AnnounceHostRequest, AnnounceHostRequest__Output as _damselfly_v2_AnnounceHostRequest__Output } from '../../damselfly/v2/AnnounceHostRequest.js';
import type { AnnouncePeerRequest as _damselfly_v2_AnnouncePeerRequest, AnnouncePeerRequest__Output as _damselfly_v2_AnnouncePeerRequest__Output } from '../../damselfly/v2/AnnouncePeerRequest.js';
import type { AnnouncePeerResponse as _damselfly_v2_AnnouncePeerResponse, AnnouncePeerResponse__Output as _damselfly_v2_AnnouncePeerResponse__Output } from '../../damselfly/v2/AnnouncePeerResponse.js';
import type { Empty as _damselfly_v2_Empty, Empty__Output as _damselfly_v2_Empty__Output } from '../../damselfly/v2/Empty.js';
import type { LeaveHostRequest as _damselfly_v2_LeaveHostRequest, LeaveHostRequest__Output as _damselfly_v2_LeaveHostRequest__Output } from '../../damselfly/v2/LeaveHostRequest.js';
import type { ListHostsResponse as _damselfly_v2_ListHostsResponse, ListHostsResponse__Output as _damselfly_v2_ListHostsResponse__Output } from '../../damselfly/v2/ListHostsResponse.js';
import type { ListTaskPeersRequest as _damselfly_v2_ListTaskPeersRequest, ListTaskPeersRequest__Output as _damselfly_v2_ListTaskPeersRequest__Output } from '../../damselfly/v2/ListTaskPeersRequest.js';
import type { ListTaskPeersResponse as _damselfly_v2_ListTaskPeersResponse, ListTaskPeersResponse__Output as _damselfly_v2_ListTaskPeersResponse__Output } from '../../damselfly/v2/ListTaskPeersResponse.js';
import type { StatTaskRequest as _damselfly_v2_StatTaskRequest, StatTaskRequest__Output as _damselfly_v2_StatTaskRequest__Output } from '../../damselfly/v2/StatTaskRequest.js';
import type { TaskInfo as _damselfly_v2_TaskInfo, TaskInfo__Output as _damselfly_v2_TaskInfo__Output } from '../../damselfly/v2/TaskInfo.js';

export interface SchedulerClient extends grpc.Client {
  /**
   * Announce (or refresh) a host. Must precede AnnouncePeer from that host.
   */
  AnnounceHost(argument: _damselfly_v2_AnnounceHostRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_damselfly_v2_Empty__Output>): grpc.ClientUnaryCall;
  AnnounceHost(argument: _damselfly_v2_AnnounceHostRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_damselfly_v2_Empty__Output>): grpc.ClientUnaryCall;
  AnnounceHost(argument: _damselfly_v2_AnnounceHostRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_damselfly_v2_Empty__Output>): grpc.ClientUnaryCall;
  AnnounceHost(argument: _damselfly_v2_AnnounceHostRequest, callback: grpc.requestCallback<_damselfly_v2_Empty__Output>): grpc.ClientUnaryCall;
  /**
   * Announce (or refresh) a host. Must precede AnnouncePeer from that host.
   */
  announceHost(argument: _damselfly_v2_AnnounceHostRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_damselfly_v2_Empty__Output>): grpc.ClientUnaryCall;
  announceHost(argument: _damselfly_v2_AnnounceHostRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_damselfly_v2_Empty__Output>): grpc.ClientUnaryCall;
  announceHost(argument: _damselfly_v2_AnnounceHostRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_damselfly_v2_Empty__Output>): grpc.ClientUnaryCall;
  announceHost(argument: _damselfly_v2_AnnounceHostRequest, callback: grpc.requestCallback<_damselfly_v2_Empty__Output>): grpc.ClientUnaryCall;
  
  /**
   * One bidirectional stream per peer (one download of one task by one agent).
   */
  AnnouncePeer(metadata: grpc.Metadata, options?: grpc.CallOptions): grpc.ClientDuplexStream<_damselfly_v2_AnnouncePeerRequest, _damselfly_v2_AnnouncePeerResponse__Output>;
  AnnouncePeer(options?: grpc.CallOptions): grpc.ClientDuplexStream<_damselfly_v2_AnnouncePeerRequest, _damselfly_v2_AnnouncePeerResponse__Output>;
  /**
   * One bidirectional stream per peer (one download of one task by one agent).
   */
  announcePeer(metadata: grpc.Metadata, options?: grpc.CallOptions): grpc.ClientDuplexStream<_damselfly_v2_AnnouncePeerRequest, _damselfly_v2_AnnouncePeerResponse__Output>;
  announcePeer(options?: grpc.CallOptions): grpc.ClientDuplexStream<_damselfly_v2_AnnouncePeerRequest, _damselfly_v2_AnnouncePeerResponse__Output>;
  
  LeaveHost(argument: _damselfly_v2_LeaveHostRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_damselfly_v2_Empty__Output>): grpc.ClientUnaryCall;
  LeaveHost(argument: _damselfly_v2_LeaveHostRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_damselfly_v2_Empty__Output>): grpc.ClientUnaryCall;
  LeaveHost(argument: _damselfly_v2_LeaveHostRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_damselfly_v2_Empty__Output>): grpc.ClientUnaryCall;
  LeaveHost(argument: _damselfly_v2_LeaveHostRequest, callback: grpc.requestCallback<_damselfly_v2_Empty__Output>): grpc.ClientUnaryCall;
  leaveHost(argument: _damselfly_v2_LeaveHostRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_damselfly_v2_Empty__Output>): grpc.ClientUnaryCall;
  leaveHost(argument: _damselfly_v2_LeaveHostRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_damselfly_v2_Empty__Output>): grpc.ClientUnaryCall;
  leaveHost(argument: _damselfly_v2_LeaveHostRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_damselfly_v2_Empty__Output>): grpc.ClientUnaryCall;
  leaveHost(argument: _damselfly_v2_LeaveHostRequest, callback: grpc.requestCallback<_damselfly_v2_Empty__Output>): grpc.ClientUnaryCall;
  
  ListHosts(argument: _damselfly_v2_Empty, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_damselfly_v2_ListHostsResponse__Output>): grpc.ClientUnaryCall;
  ListHosts(argument: _damselfly_v2_Empty, metadata: grpc.Metadata, callback: grpc.requestCallback<_damselfly_v2_ListHostsResponse__Output>): grpc.ClientUnaryCall;
  ListHosts(argument: _damselfly_v2_Empty, options: grpc.CallOptions, callback: grpc.requestCallback<_damselfly_v2_ListHostsResponse__Output>): grpc.ClientUnaryCall;
  ListHosts(argument: _damselfly_v2_Empty, callback: grpc.requestCallback<_damselfly_v2_ListHostsResponse__Output>): grpc.ClientUnaryCall;
  listHosts(argument: _damselfly_v2_Empty, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_damselfly_v2_ListHostsResponse__Output>): grpc.ClientUnaryCall;
  listHosts(argument: _damselfly_v2_Empty, metadata: grpc.Metadata, callback: grpc.requestCallback<_damselfly_v2_ListHostsResponse__Output>): grpc.ClientUnaryCall;
  listHosts(argument: _damselfly_v2_Empty, options: grpc.CallOptions, callback: grpc.requestCallback<_damselfly_v2_ListHostsResponse__Output>): grpc.ClientUnaryCall;
  listHosts(argument: _damselfly_v2_Empty, callback: grpc.requestCallback<_damselfly_v2_ListHostsResponse__Output>): grpc.ClientUnaryCall;
  
  ListTaskPeers(argument: _damselfly_v2_ListTaskPeersRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_damselfly_v2_ListTaskPeersResponse__Output>): grpc.ClientUnaryCall;
  ListTaskPeers(argument: _damselfly_v2_ListTaskPeersRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_damselfly_v2_ListTaskPeersResponse__Output>): grpc.ClientUnaryCall;
  ListTaskPeers(argument: _damselfly_v2_ListTaskPeersRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_damselfly_v2_ListTaskPeersResponse__Output>): grpc.ClientUnaryCall;
  ListTaskPeers(argument: _damselfly_v2_ListTaskPeersRequest, callback: grpc.requestCallback<_damselfly_v2_ListTaskPeersResponse__Output>): grpc.ClientUnaryCall;
  listTaskPeers(argument: _damselfly_v2_ListTaskPeersRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_damselfly_v2_ListTaskPeersResponse__Output>): grpc.ClientUnaryCall;
  listTaskPeers(argument: _damselfly_v2_ListTaskPeersRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_damselfly_v2_ListTaskPeersResponse__Output>): grpc.ClientUnaryCall;
  listTaskPeers(argument: _damselfly_v2_ListTaskPeersRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_damselfly_v2_ListTaskPeersResponse__Output>): grpc.ClientUnaryCall;
  listTaskPeers(argument: _damselfly_v2_ListTaskPeersRequest, callback: grpc.requestCallback<_damselfly_v2_ListTaskPeersResponse__Output>): grpc.ClientUnaryCall;
  
  StatTask(argument: _damselfly_v2_StatTaskRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_damselfly_v2_TaskInfo__Output>): grpc.ClientUnaryCall;
  StatTask(argument: _damselfly_v2_StatTaskRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_damselfly_v2_TaskInfo__Output>): grpc.ClientUnaryCall;
  StatTask(argument: _damselfly_v2_StatTaskRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_damselfly_v2_TaskInfo__Output>): grpc.ClientUnaryCall;
  StatTask(argument: _damselfly_v2_StatTaskRequest, callback: grpc.requestCallback<_damselfly_v2_TaskInfo__Output>): grpc.ClientUnaryCall;
  statTask(argument: _damselfly_v2_StatTaskRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_damselfly_v2_TaskInfo__Output>): grpc.ClientUnaryCall;
  statTask(argument: _damselfly_v2_StatTaskRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_damselfly_v2_TaskInfo__Output>): grpc.ClientUnaryCall;
  statTask(argument: _damselfly_v2_StatTaskRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_damselfly_v2_TaskInfo__Output>): grpc.ClientUnaryCall;
  statTask(argument: _damselfly_v2_StatTaskRequest, callback: grpc.requestCallback<_damselfly_v2_TaskInfo__Output>): grpc.ClientUnaryCall;
  
}

export interface SchedulerHandlers extends grpc.UntypedServiceImplementation {
  /**
   * Announce (or refresh) a host. Must precede AnnouncePeer from that host.
   */
  AnnounceHost: grpc.handleUnaryCall<_damselfly_v2_AnnounceHostRequest__Output, _damselfly_v2_Empty>;
  
  /**
   * One bidirectional stream per peer (one download of one task by one agent).
   */
  AnnouncePeer: grpc.handleBidiStreamingCall<_damselfly_v2_AnnouncePeerRequest__Output, _damselfly_v2_AnnouncePeerResponse>;
  
  LeaveHost: grpc.handleUnaryCall<_damselfly_v2_LeaveHostRequest__Output, _damselfly_v2_Empty>;
  
  ListHosts: grpc.handleUnaryCall<_damselfly_v2_Empty__Output, _damselfly_v2_ListHostsResponse>;
  
  ListTaskPeers: grpc.handleUnaryCall<_damselfly_v2_ListTaskPeersRequest__Output, _damselfly_v2_ListTaskPeersResponse>;
  
  StatTask: grpc.handleUnaryCall<_damselfly_v2_StatTaskRequest__Output, _damselfly_v2_TaskInfo>;
  
}

export interface SchedulerDefinition extends grpc.ServiceDefinition {
  AnnounceHost: MethodDefinition<_damselfly_v2_AnnounceHostRequest, _damselfly_v2_Empty, _damselfly_v2_AnnounceHostRequest__Output, _damselfly_v2_Empty__Output>
  AnnouncePeer: MethodDefinition<_damselfly_v2_AnnouncePeerRequest, _damselfly_v2_AnnouncePeerResponse, _damselfly_v2_AnnouncePeerRequest__Output, _damselfly_v2_AnnouncePeerResponse__Output>
  LeaveHost: MethodDefinition<_damselfly_v2_LeaveHostRequest, _damselfly_v2_Empty, _damselfly_v2_LeaveHostRequest__Output, _damselfly_v2_Empty__Output>
  ListHosts: MethodDefinition<_damselfly_v2_Empty, _damselfly_v2_ListHostsResponse, _damselfly_v2_Empty__Output, _damselfly_v2_ListHostsResponse__Output>
  ListTaskPeers: MethodDefinition<_damselfly_v2_ListTaskPeersRequest, _damselfly_v2_ListTaskPeersResponse, _damselfly_v2_ListTaskPeersRequest__Output, _damselfly_v2_ListTaskPeersResponse__Output>
  StatTask: MethodDefinition<_damselfly_v2_StatTaskRequest, _damselfly_v2_TaskInfo, _damselfly_v2_StatTaskRequest__Output, _damselfly_v2_TaskInfo__Output>
}
