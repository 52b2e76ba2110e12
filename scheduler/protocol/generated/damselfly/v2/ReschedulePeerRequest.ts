// Original file: scheduler/protocol/damselfly.proto


export interface ReschedulePeerRequest {
  /**
   * parents that failed this peer; added to its blocklist
   */
  'candidate_parent_ids'?: (string)[];
  'description'?: (string);
}

export interface ReschedulePeerRequest__Output {
  /**
   * parents that failed this peer; added to its blocklist
   */
  'candidate_parent_ids': (string)[];
  'description': (string);
}
