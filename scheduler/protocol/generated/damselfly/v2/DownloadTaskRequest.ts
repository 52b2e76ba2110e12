// Original file: scheduler/protocol/damselfly.proto

import type { Download as _damselfly_v2_Download, Download__Output as _damselfly_v2_Download__Output } from '../../damselfly/v2/Download.js';

export interface DownloadTaskRequest {
  'download'?: (_damselfly_v2_Download | null);
}

export interface DownloadTaskRequest__Output {
  'download': (_damselfly_v2_Download__Output | null);
}
