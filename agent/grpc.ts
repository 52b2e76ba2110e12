/** Wire shapes (keepCase) of scheduler/damselfly.proto's messages as the agent builds and reads them; the services load in scheduler/proto.ts. */
export interface PieceMsg {
  number: number;
  parent_id: string;
  offset: number;
  length: number;
  digest: string;
  traffic_type: 'BACK_TO_SOURCE' | 'REMOTE_PEER' | 'LOCAL_PEER';
  cost_ms: number;
  /** sha256 of each block of the piece (agent/blocks.ts), concatenated; empty when not published. */
  block_digests?: Buffer | Uint8Array;
}
export interface HostMsg {
  id: string;
  type: 'NORMAL' | 'SUPER_SEED' | 'STRONG_SEED' | 'WEAK_SEED';
  hostname: string;
  ip: string;
  port: number;
  download_port: number;
  idc: string;
  location: string;
  max_tx_bandwidth: number;
  upload_limit: number;
  concurrent_upload_count: number;
  proxy_port: number;
  scheduler_cluster_id: number;
  disable_shared: boolean;
  os: string;
  platform: string;
}
export interface PeerMsg {
  id: string;
  host?: HostMsg;
  state: string;
  finished_piece_count: number;
  task_id: string;
  is_finished: boolean;
}
export interface TaskInfoMsg {
  id: string;
  content_length: number;
  piece_length: number;
  piece_count: number;
  pieces: PieceMsg[];
  state: string;
  peer_count: number;
}
export interface DownloadMsg {
  url: string;
  digest: string;
  tag: string;
  application: string;
  priority: string | number;
  filtered_query_params: string[];
  request_header: Record<string, string>;
  piece_length: number;
  disable_back_to_source: boolean;
  need_back_to_source: boolean;
  range?: { start: number; length: number } | null;
  timeout_ms: number;
  is_preheat: boolean;
  content_for_calculating_task_id?: string;
  enable_task_id_based_blob_digest?: boolean;
}
export interface AnnouncePeerResponseMsg {
  response?: 'empty_task_response' | 'normal_task_response' | 'need_back_to_source_response' | 'task_pieces_response';
  empty_task_response?: object;
  normal_task_response?: { candidate_parents: PeerMsg[]; task?: TaskInfoMsg };
  need_back_to_source_response?: { description: string };
  task_pieces_response?: { task?: TaskInfoMsg };
}
