// Original file: scheduler/protocol/damselfly.proto

import type { Peer as _damselfly_v2_Peer, Peer__Output as _damselfly_v2_Peer__Output } from '../../damselfly/v2/Peer.js';

export interface ListTaskPeersResponse {
  'peers'?: (_damselfly_v2_Peer)[];
}

export interface ListTaskPeersResponse__Output {
  'peers': (_damselfly_v2_Peer__Output)[];
}
