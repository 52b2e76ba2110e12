// Original file: scheduler/protocol/damselfly.proto

import type { HostType as _damselfly_v2_HostType, HostType__Output as _damselfly_v2_HostType__Output } from '../../damselfly/v2/HostType.js';
import type { Long } from '@grpc/proto-loader';

export interface Host {
  /**
   * "{ip}-{hostname}", "-seed" suffix for seed peers
   */
  'id'?: (string);
  'type'?: (_damselfly_v2_HostType);
  'hostname'?: (string);
  'ip'?: (string);
  /**
   * the agent's gRPC port (Dfdaemon service below)
   */
  'port'?: (number);
  /**
   * the agent's HTTP piece server
   */
  'download_port'?: (number);
  'idc'?: (string);
  /**
   * "country|province|city|..." ('|'-separated, up to 5 elements used)
   */
  'location'?: (string);
  /**
   * bytes per second the host may upload; 0 = unknown
   */
  'max_tx_bandwidth'?: (number | string | Long);
  /**
   * concurrent piece uploads the host accepts
   */
  'upload_limit'?: (number);
  /**
   * as last reported
   */
  'concurrent_upload_count'?: (number);
  'proxy_port'?: (number);
  'scheduler_cluster_id'?: (number | string | Long);
  /**
   * never chosen as a parent
   */
  'disable_shared'?: (boolean);
  'os'?: (string);
  'platform'?: (string);
}

export interface Host__Output {
  /**
   * "{ip}-{hostname}", "-seed" suffix for seed peers
   */
  'id': (string);
  'type': (_damselfly_v2_HostType__Output);
  'hostname': (string);
  'ip': (string);
  /**
   * the agent's gRPC port (Dfdaemon service below)
   */
  'port': (number);
  /**
   * the agent's HTTP piece server
   */
  'download_port': (number);
  'idc': (string);
  /**
   * "country|province|city|..." ('|'-separated, up to 5 elements used)
   */
  'location': (string);
  /**
   * bytes per second the host may upload; 0 = unknown
   */
  'max_tx_bandwidth': (number);
  /**
   * concurrent piece uploads the host accepts
   */
  'upload_limit': (number);
  /**
   * as last reported
   */
  'concurrent_upload_count': (number);
  'proxy_port': (number);
  'scheduler_cluster_id': (number);
  /**
   * never chosen as a parent
   */
  'disable_shared': (boolean);
  'os': (string);
  'platform': (string);
}
