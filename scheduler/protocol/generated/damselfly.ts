import type * as grpc from '@grpc/grpc-js';
import type { EnumTypeDefinition, MessageTypeDefinition } from '@grpc/proto-loader';

import type { AnnounceHostRequest as _damselfly_v2_AnnounceHostRequest, AnnounceHostRequest__Output as _damselfly_v2_AnnounceHostRequest__Output } from './damselfly/v2/AnnounceHostRequest.js';
import type { AnnouncePeerRequest as _damselfly_v2_AnnouncePeerRequest, AnnouncePeerRequest__Output as _damselfly_v2_AnnouncePeerRequest__Output } from './damselfly/v2/AnnouncePeerRequest.js';
import type { AnnouncePeerResponse as _damselfly_v2_AnnouncePeerResponse, AnnouncePeerResponse__Output as _damselfly_v2_AnnouncePeerResponse__Output } from './damselfly/v2/AnnouncePeerResponse.js';
import type { DeleteLocalTaskRequest as _damselfly_v2_DeleteLocalTaskRequest, DeleteLocalTaskRequest__Output as _damselfly_v2_DeleteLocalTaskRequest__Output } from './damselfly/v2/DeleteLocalTaskRequest.js';
import type { DeleteTaskRequest as _damselfly_v2_DeleteTaskRequest, DeleteTaskRequest__Output as _damselfly_v2_DeleteTaskRequest__Output } from './damselfly/v2/DeleteTaskRequest.js';
import type { DfdaemonClient as _damselfly_v2_DfdaemonClient, DfdaemonDefinition as _damselfly_v2_DfdaemonDefinition } from './damselfly/v2/Dfdaemon.js';
import type { Download as _damselfly_v2_Download, Download__Output as _damselfly_v2_Download__Output } from './damselfly/v2/Download.js';
import type { DownloadPeerBackToSourceFailedRequest as _damselfly_v2_DownloadPeerBackToSourceFailedRequest, DownloadPeerBackToSourceFailedRequest__Output as _damselfly_v2_DownloadPeerBackToSourceFailedRequest__Output } from './damselfly/v2/DownloadPeerBackToSourceFailedRequest.js';
import type { DownloadPeerBackToSourceFinishedRequest as _damselfly_v2_DownloadPeerBackToSourceFinishedRequest, DownloadPeerBackToSourceFinishedRequest__Output as _damselfly_v2_DownloadPeerBackToSourceFinishedRequest__Output } from './damselfly/v2/DownloadPeerBackToSourceFinishedRequest.js';
import type { DownloadPeerBackToSourceStartedRequest as _damselfly_v2_DownloadPeerBackToSourceStartedRequest, DownloadPeerBackToSourceStartedRequest__Output as _damselfly_v2_DownloadPeerBackToSourceStartedRequest__Output } from './damselfly/v2/DownloadPeerBackToSourceStartedRequest.js';
import type { DownloadPeerFailedRequest as _damselfly_v2_DownloadPeerFailedRequest, DownloadPeerFailedRequest__Output as _damselfly_v2_DownloadPeerFailedRequest__Output } from './damselfly/v2/DownloadPeerFailedRequest.js';
import type { DownloadPeerFinishedRequest as _damselfly_v2_DownloadPeerFinishedRequest, DownloadPeerFinishedRequest__Output as _damselfly_v2_DownloadPeerFinishedRequest__Output } from './damselfly/v2/DownloadPeerFinishedRequest.js';
import type { DownloadPeerStartedRequest as _damselfly_v2_DownloadPeerStartedRequest, DownloadPeerStartedRequest__Output as _damselfly_v2_DownloadPeerStartedRequest__Output } from './damselfly/v2/DownloadPeerStartedRequest.js';
import type { DownloadPieceBackToSourceFailedRequest as _damselfly_v2_DownloadPieceBackToSourceFailedRequest, DownloadPieceBackToSourceFailedRequest__Output as _damselfly_v2_DownloadPieceBackToSourceFailedRequest__Output } from './damselfly/v2/DownloadPieceBackToSourceFailedRequest.js';
import type { DownloadPieceBackToSourceFinishedRequest as _damselfly_v2_DownloadPieceBackToSourceFinishedRequest, DownloadPieceBackToSourceFinishedRequest__Output as _damselfly_v2_DownloadPieceBackToSourceFinishedRequest__Output } from './damselfly/v2/DownloadPieceBackToSourceFinishedRequest.js';
import type { DownloadPieceFailedRequest as _damselfly_v2_DownloadPieceFailedRequest, DownloadPieceFailedRequest__Output as _damselfly_v2_DownloadPieceFailedRequest__Output } from './damselfly/v2/DownloadPieceFailedRequest.js';
import type { DownloadPieceFinishedRequest as _damselfly_v2_DownloadPieceFinishedRequest, DownloadPieceFinishedRequest__Output as _damselfly_v2_DownloadPieceFinishedRequest__Output } from './damselfly/v2/DownloadPieceFinishedRequest.js';
import type { DownloadTaskRequest as _damselfly_v2_DownloadTaskRequest, DownloadTaskRequest__Output as _damselfly_v2_DownloadTaskRequest__Output } from './damselfly/v2/DownloadTaskRequest.js';
import type { DownloadTaskResponse as _damselfly_v2_DownloadTaskResponse, DownloadTaskResponse__Output as _damselfly_v2_DownloadTaskResponse__Output } from './damselfly/v2/DownloadTaskResponse.js';
import type { Empty as _damselfly_v2_Empty, Empty__Output as _damselfly_v2_Empty__Output } from './damselfly/v2/Empty.js';
import type { EmptyTaskResponse as _damselfly_v2_EmptyTaskResponse, EmptyTaskResponse__Output as _damselfly_v2_EmptyTaskResponse__Output } from './damselfly/v2/EmptyTaskResponse.js';
import type { Host as _damselfly_v2_Host, Host__Output as _damselfly_v2_Host__Output } from './damselfly/v2/Host.js';
import type { LeaveHostRequest as _damselfly_v2_LeaveHostRequest, LeaveHostRequest__Output as _damselfly_v2_LeaveHostRequest__Output } from './damselfly/v2/LeaveHostRequest.js';
import type { LeavePeerRequest as _damselfly_v2_LeavePeerRequest, LeavePeerRequest__Output as _damselfly_v2_LeavePeerRequest__Output } from './damselfly/v2/LeavePeerRequest.js';
import type { ListHostsResponse as _damselfly_v2_ListHostsResponse, ListHostsResponse__Output as _damselfly_v2_ListHostsResponse__Output } from './damselfly/v2/ListHostsResponse.js';
import type { ListTaskPeersRequest as _damselfly_v2_ListTaskPeersRequest, ListTaskPeersRequest__Output as _damselfly_v2_ListTaskPeersRequest__Output } from './damselfly/v2/ListTaskPeersRequest.js';
import type { ListTaskPeersResponse as _damselfly_v2_ListTaskPeersResponse, ListTaskPeersResponse__Output as _damselfly_v2_ListTaskPeersResponse__Output } from './damselfly/v2/ListTaskPeersResponse.js';
import type { NeedBackToSourceResponse as _damselfly_v2_NeedBackToSourceResponse, NeedBackToSourceResponse__Output as _damselfly_v2_NeedBackToSourceResponse__Output } from './damselfly/v2/NeedBackToSourceResponse.js';
import type { NormalTaskResponse as _damselfly_v2_NormalTaskResponse, NormalTaskResponse__Output as _damselfly_v2_NormalTaskResponse__Output } from './damselfly/v2/NormalTaskResponse.js';
import type { Peer as _damselfly_v2_Peer, Peer__Output as _damselfly_v2_Peer__Output } from './damselfly/v2/Peer.js';
import type { Piece as _damselfly_v2_Piece, Piece__Output as _damselfly_v2_Piece__Output } from './damselfly/v2/Piece.js';
import type { Range as _damselfly_v2_Range, Range__Output as _damselfly_v2_Range__Output } from './damselfly/v2/Range.js';
import type { RegisterPeerRequest as _damselfly_v2_RegisterPeerRequest, RegisterPeerRequest__Output as _damselfly_v2_RegisterPeerRequest__Output } from './damselfly/v2/RegisterPeerRequest.js';
import type { ReschedulePeerRequest as _damselfly_v2_ReschedulePeerRequest, ReschedulePeerRequest__Output as _damselfly_v2_ReschedulePeerRequest__Output } from './damselfly/v2/ReschedulePeerRequest.js';
import type { SchedulerClient as _damselfly_v2_SchedulerClient, SchedulerDefinition as _damselfly_v2_SchedulerDefinition } from './damselfly/v2/Scheduler.js';
import type { StatLocalTaskRequest as _damselfly_v2_StatLocalTaskRequest, StatLocalTaskRequest__Output as _damselfly_v2_StatLocalTaskRequest__Output } from './damselfly/v2/StatLocalTaskRequest.js';
import type { StatLocalTaskResponse as _damselfly_v2_StatLocalTaskResponse, StatLocalTaskResponse__Output as _damselfly_v2_StatLocalTaskResponse__Output } from './damselfly/v2/StatLocalTaskResponse.js';
import type { StatTaskRequest as _damselfly_v2_StatTaskRequest, StatTaskRequest__Output as _damselfly_v2_StatTaskRequest__Output } from './damselfly/v2/StatTaskRequest.js';
import type { TaskInfo as _damselfly_v2_TaskInfo, TaskInfo__Output as _damselfly_v2_TaskInfo__Output } from './damselfly/v2/TaskInfo.js';
import type { TaskPiecesResponse as _damselfly_v2_TaskPiecesResponse, TaskPiecesResponse__Output as _damselfly_v2_TaskPiecesResponse__Output } from './damselfly/v2/TaskPiecesResponse.js';

type SubtypeConstructor<Constructor extends new (...args: any) => any, Subtype> = {
  new(...args: ConstructorParameters<Constructor>): Subtype;
};

export interface ProtoGrpcType {
  damselfly: {
    v2: {
      AnnounceHostRequest: MessageTypeDefinition<_damselfly_v2_AnnounceHostRequest, _damselfly_v2_AnnounceHostRequest__Output>
      AnnouncePeerRequest: MessageTypeDefinition<_damselfly_v2_AnnouncePeerRequest, _damselfly_v2_AnnouncePeerRequest__Output>
      AnnouncePeerResponse: MessageTypeDefinition<_damselfly_v2_AnnouncePeerResponse, _damselfly_v2_AnnouncePeerResponse__Output>
      DeleteLocalTaskRequest: MessageTypeDefinition<_damselfly_v2_DeleteLocalTaskRequest, _damselfly_v2_DeleteLocalTaskRequest__Output>
      DeleteTaskRequest: MessageTypeDefinition<_damselfly_v2_DeleteTaskRequest, _damselfly_v2_DeleteTaskRequest__Output>
      Dfdaemon: SubtypeConstructor<typeof grpc.Client, _damselfly_v2_DfdaemonClient> & { service: _damselfly_v2_DfdaemonDefinition }
      Download: MessageTypeDefinition<_damselfly_v2_Download, _damselfly_v2_Download__Output>
      DownloadPeerBackToSourceFailedRequest: MessageTypeDefinition<_damselfly_v2_DownloadPeerBackToSourceFailedRequest, _damselfly_v2_DownloadPeerBackToSourceFailedRequest__Output>
      DownloadPeerBackToSourceFinishedRequest: MessageTypeDefinition<_damselfly_v2_DownloadPeerBackToSourceFinishedRequest, _damselfly_v2_DownloadPeerBackToSourceFinishedRequest__Output>
      DownloadPeerBackToSourceStartedRequest: MessageTypeDefinition<_damselfly_v2_DownloadPeerBackToSourceStartedRequest, _damselfly_v2_DownloadPeerBackToSourceStartedRequest__Output>
      DownloadPeerFailedRequest: MessageTypeDefinition<_damselfly_v2_DownloadPeerFailedRequest, _damselfly_v2_DownloadPeerFailedRequest__Output>
      DownloadPeerFinishedRequest: MessageTypeDefinition<_damselfly_v2_DownloadPeerFinishedRequest, _damselfly_v2_DownloadPeerFinishedRequest__Output>
      DownloadPeerStartedRequest: MessageTypeDefinition<_damselfly_v2_DownloadPeerStartedRequest, _damselfly_v2_DownloadPeerStartedRequest__Output>
      DownloadPieceBackToSourceFailedRequest: MessageTypeDefinition<_damselfly_v2_DownloadPieceBackToSourceFailedRequest, _damselfly_v2_DownloadPieceBackToSourceFailedRequest__Output>
      DownloadPieceBackToSourceFinishedRequest: MessageTypeDefinition<_damselfly_v2_DownloadPieceBackToSourceFinishedRequest, _damselfly_v2_DownloadPieceBackToSourceFinishedRequest__Output>
      DownloadPieceFailedRequest: MessageTypeDefinition<_damselfly_v2_DownloadPieceFailedRequest, _damselfly_v2_DownloadPieceFailedRequest__Output>
      DownloadPieceFinishedRequest: MessageTypeDefinition<_damselfly_v2_DownloadPieceFinishedRequest, _damselfly_v2_DownloadPieceFinishedRequest__Output>
      DownloadTaskRequest: MessageTypeDefinition<_damselfly_v2_DownloadTaskRequest, _damselfly_v2_DownloadTaskRequest__Output>
      DownloadTaskResponse: MessageTypeDefinition<_damselfly_v2_DownloadTaskResponse, _damselfly_v2_DownloadTaskResponse__Output>
      Empty: MessageTypeDefinition<_damselfly_v2_Empty, _damselfly_v2_Empty__Output>
      EmptyTaskResponse: MessageTypeDefinition<_damselfly_v2_EmptyTaskResponse, _damselfly_v2_EmptyTaskResponse__Output>
      Host: MessageTypeDefinition<_damselfly_v2_Host, _damselfly_v2_Host__Output>
      HostType: EnumTypeDefinition
      LeaveHostRequest: MessageTypeDefinition<_damselfly_v2_LeaveHostRequest, _damselfly_v2_LeaveHostRequest__Output>
      LeavePeerRequest: MessageTypeDefinition<_damselfly_v2_LeavePeerRequest, _damselfly_v2_LeavePeerRequest__Output>
      ListHostsResponse: MessageTypeDefinition<_damselfly_v2_ListHostsResponse, _damselfly_v2_ListHostsResponse__Output>
      ListTaskPeersRequest: MessageTypeDefinition<_damselfly_v2_ListTaskPeersRequest, _damselfly_v2_ListTaskPeersRequest__Output>
      ListTaskPeersResponse: MessageTypeDefinition<_damselfly_v2_ListTaskPeersResponse, _damselfly_v2_ListTaskPeersResponse__Output>
      NeedBackToSourceResponse: MessageTypeDefinition<_damselfly_v2_NeedBackToSourceResponse, _damselfly_v2_NeedBackToSourceResponse__Output>
      NormalTaskResponse: MessageTypeDefinition<_damselfly_v2_NormalTaskResponse, _damselfly_v2_NormalTaskResponse__Output>
      Peer: MessageTypeDefinition<_damselfly_v2_Peer, _damselfly_v2_Peer__Output>
      Piece: MessageTypeDefinition<_damselfly_v2_Piece, _damselfly_v2_Piece__Output>
      Priority: EnumTypeDefinition
      Range: MessageTypeDefinition<_damselfly_v2_Range, _damselfly_v2_Range__Output>
      RegisterPeerRequest: MessageTypeDefinition<_damselfly_v2_RegisterPeerRequest, _damselfly_v2_RegisterPeerRequest__Output>
      ReschedulePeerRequest: MessageTypeDefinition<_damselfly_v2_ReschedulePeerRequest, _damselfly_v2_ReschedulePeerRequest__Output>
      Scheduler: SubtypeConstructor<typeof grpc.Client, _damselfly_v2_SchedulerClient> & { service: _damselfly_v2_SchedulerDefinition }
      StatLocalTaskRequest: MessageTypeDefinition<_damselfly_v2_StatLocalTaskRequest, _damselfly_v2_StatLocalTaskRequest__Output>
      StatLocalTaskResponse: MessageTypeDefinition<_damselfly_v2_StatLocalTaskResponse, _damselfly_v2_StatLocalTaskResponse__Output>
      StatTaskRequest: MessageTypeDefinition<_damselfly_v2_StatTaskRequest, _damselfly_v2_StatTaskRequest__Output>
      TaskInfo: MessageTypeDefinition<_damselfly_v2_TaskInfo, _damselfly_v2_TaskInfo__Output>
      TaskPiecesResponse: MessageTypeDefinition<_damselfly_v2_TaskPiecesResponse, _damselfly_v2_TaskPiecesResponse__Output>
      TrafficType: EnumTypeDefinition
    }
  }
}

