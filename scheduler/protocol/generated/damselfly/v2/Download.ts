// Original file: scheduler/protocol/damselfly.proto

import type { Priority as _damselfly_v2_Priority, Priority__Output as _damselfly_v2_Priority__Output } from '../../damselfly/v2/Priority.js';
import type { Range as _damselfly_v2_Range, Range__Output as _damselfly_v2_Range__Output } from '../../damselfly/v2/Range.js';
import type { Long } from '@grpc/proto-loader';

export interface Download {
  'url'?: (string);
  /**
   * "sha256:<hex>" of the whole content, when known
   */
  'digest'?: (string);
  'tag'?: (string);
  'application'?: (string);
  'priority'?: (_damselfly_v2_Priority);
  'filtered_query_params'?: (string)[];
  /**
   * forwarded to the origin; never logged
   */
  'request_header'?: ({[key: string]: string});
  /**
   * 0 = computed from the content length
   */
  'piece_length'?: (number | string | Long);
  'disable_back_to_source'?: (boolean);
  'need_back_to_source'?: (boolean);
  'range'?: (_damselfly_v2_Range | null);
  'timeout_ms'?: (number | string | Long);
  'is_preheat'?: (boolean);
  /**
   * Task ID = sha256 hex of this string instead of the URL-based ID (Dragonfly's field 23).
   */
  'content_for_calculating_task_id'?: (string);
  /**
   * An OCI blob URL's task ID is its digest's hex (Dragonfly's field 30).
   */
  'enable_task_id_based_blob_digest'?: (boolean);
}

export interface Download__Output {
  'url': (string);
  /**
   * "sha256:<hex>" of the whole content, when known
   */
  'digest': (string);
  'tag': (string);
  'application': (string);
  'priority': (_damselfly_v2_Priority__Output);
  'filtered_query_params': (string)[];
  /**
   * forwarded to the origin; never logged
   */
  'request_header': ({[key: string]: string});
  /**
   * 0 = computed from the content length
   */
  'piece_length': (number);
  'disable_back_to_source': (boolean);
  'need_back_to_source': (boolean);
  'range': (_damselfly_v2_Range__Output | null);
  'timeout_ms': (number);
  'is_preheat': (boolean);
  /**
   * Task ID = sha256 hex of this string instead of the URL-based ID (Dragonfly's field 23).
   */
  'content_for_calculating_task_id': (string);
  /**
   * An OCI blob URL's task ID is its digest's hex (Dragonfly's field 30).
   */
  'enable_task_id_based_blob_digest': (boolean);
}
