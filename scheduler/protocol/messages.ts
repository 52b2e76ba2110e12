/**
 * The wire messages of scheduler/protocol/damselfly.proto as TypeScript types, one import for every
 * role. `X` is what a sender may pass (every field optional, as protobuf allows); `X__Output` is what
 * a receiver gets from the loader options in loader.ts (defaults filled, enums as names). Generated
 * by `npm run proto:gen` into generated/; loader.test.ts fails when that output is stale.
 */
export type { AnnounceHostRequest, AnnounceHostRequest__Output } from './generated/damselfly/v2/AnnounceHostRequest.js';
export type { AnnouncePeerRequest, AnnouncePeerRequest__Output } from './generated/damselfly/v2/AnnouncePeerRequest.js';
export type { AnnouncePeerResponse, AnnouncePeerResponse__Output } from './generated/damselfly/v2/AnnouncePeerResponse.js';
export type { DeleteLocalTaskRequest, DeleteLocalTaskRequest__Output } from './generated/damselfly/v2/DeleteLocalTaskRequest.js';
export type { DeleteTaskRequest, DeleteTaskRequest__Output } from './generated/damselfly/v2/DeleteTaskRequest.js';
export type { DfdaemonClient, DfdaemonHandlers } from './generated/damselfly/v2/Dfdaemon.js';
export type { Download, Download__Output } from './generated/damselfly/v2/Download.js';
export type { DownloadPeerBackToSourceFailedRequest, DownloadPeerBackToSourceFailedRequest__Output } from './generated/damselfly/v2/DownloadPeerBackToSourceFailedRequest.js';
export type { DownloadPeerBackToSourceFinishedRequest, DownloadPeerBackToSourceFinishedRequest__Output } from './generated/damselfly/v2/DownloadPeerBackToSourceFinishedRequest.js';
export type { DownloadPeerBackToSourceStartedRequest, DownloadPeerBackToSourceStartedRequest__Output } from './generated/damselfly/v2/DownloadPeerBackToSourceStartedRequest.js';
export type { DownloadPeerFailedRequest, DownloadPeerFailedRequest__Output } from './generated/damselfly/v2/DownloadPeerFailedRequest.js';
export type { DownloadPeerFinishedRequest, DownloadPeerFinishedRequest__Output } from './generated/damselfly/v2/DownloadPeerFinishedRequest.js';
export type { DownloadPeerStartedRequest, DownloadPeerStartedRequest__Output } from './generated/damselfly/v2/DownloadPeerStartedRequest.js';
export type { DownloadPieceBackToSourceFailedRequest, DownloadPieceBackToSourceFailedRequest__Output } from './generated/damselfly/v2/DownloadPieceBackToSourceFailedRequest.js';
export type { DownloadPieceBackToSourceFinishedRequest, DownloadPieceBackToSourceFinishedRequest__Output } from './generated/damselfly/v2/DownloadPieceBackToSourceFinishedRequest.js';
export type { DownloadPieceFailedRequest, DownloadPieceFailedRequest__Output } from './generated/damselfly/v2/DownloadPieceFailedRequest.js';
export type { DownloadPieceFinishedRequest, DownloadPieceFinishedRequest__Output } from './generated/damselfly/v2/DownloadPieceFinishedRequest.js';
export type { DownloadTaskRequest, DownloadTaskRequest__Output } from './generated/damselfly/v2/DownloadTaskRequest.js';
export type { DownloadTaskResponse, DownloadTaskResponse__Output } from './generated/damselfly/v2/DownloadTaskResponse.js';
export type { Empty, Empty__Output } from './generated/damselfly/v2/Empty.js';
export type { EmptyTaskResponse, EmptyTaskResponse__Output } from './generated/damselfly/v2/EmptyTaskResponse.js';
export type { Host, Host__Output } from './generated/damselfly/v2/Host.js';
export type { HostType, HostType__Output } from './generated/damselfly/v2/HostType.js';
export type { LeaveHostRequest, LeaveHostRequest__Output } from './generated/damselfly/v2/LeaveHostRequest.js';
export type { LeavePeerRequest, LeavePeerRequest__Output } from './generated/damselfly/v2/LeavePeerRequest.js';
export type { ListHostsResponse, ListHostsResponse__Output } from './generated/damselfly/v2/ListHostsResponse.js';
export type { ListTaskPeersRequest, ListTaskPeersRequest__Output } from './generated/damselfly/v2/ListTaskPeersRequest.js';
export type { ListTaskPeersResponse, ListTaskPeersResponse__Output } from './generated/damselfly/v2/ListTaskPeersResponse.js';
export type { NeedBackToSourceResponse, NeedBackToSourceResponse__Output } from './generated/damselfly/v2/NeedBackToSourceResponse.js';
export type { NormalTaskResponse, NormalTaskResponse__Output } from './generated/damselfly/v2/NormalTaskResponse.js';
export type { Peer, Peer__Output } from './generated/damselfly/v2/Peer.js';
export type { Piece, Piece__Output } from './generated/damselfly/v2/Piece.js';
export type { Priority, Priority__Output } from './generated/damselfly/v2/Priority.js';
export type { Range, Range__Output } from './generated/damselfly/v2/Range.js';
export type { RegisterPeerRequest, RegisterPeerRequest__Output } from './generated/damselfly/v2/RegisterPeerRequest.js';
export type { ReschedulePeerRequest, ReschedulePeerRequest__Output } from './generated/damselfly/v2/ReschedulePeerRequest.js';
export type { SchedulerClient, SchedulerHandlers } from './generated/damselfly/v2/Scheduler.js';
export type { StatLocalTaskRequest, StatLocalTaskRequest__Output } from './generated/damselfly/v2/StatLocalTaskRequest.js';
export type { StatLocalTaskResponse, StatLocalTaskResponse__Output } from './generated/damselfly/v2/StatLocalTaskResponse.js';
export type { StatTaskRequest, StatTaskRequest__Output } from './generated/damselfly/v2/StatTaskRequest.js';
export type { TaskInfo, TaskInfo__Output } from './generated/damselfly/v2/TaskInfo.js';
export type { TaskPiecesResponse, TaskPiecesResponse__Output } from './generated/damselfly/v2/TaskPiecesResponse.js';
export type { TrafficType, TrafficType__Output } from './generated/damselfly/v2/TrafficType.js';
export type { ProtoGrpcType } from './generated/damselfly.js';

/**
 * The description of the back-to-source start with which an agent announces a task it already holds
 * to a (restarted) scheduler (agent/download/announce.ts): its piece reports that follow moved no
 * bytes, so the scheduler counts them as held, not as traffic.
 */
export const HELD_TASK_DESCRIPTION = 'held';
