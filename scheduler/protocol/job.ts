/**
 * The job message the manager puts on a scheduler cluster's queue (adapters/keys.ts jobQueue) and
 * the scheduler's job runner takes off it: one schema, imported by both sides.
 */
import { z } from 'zod';

export const JOB_TYPES = ['preheat', 'get_task', 'delete_task'] as const;
export type JobType = (typeof JOB_TYPES)[number];

export const jobMessageSchema = z.object({
  job_id: z.number().int().nonnegative(),
  scheduler_cluster_id: z.number().int().nonnegative(),
  type: z.enum(JOB_TYPES),
  /** The job's arguments as the manager validated them, without `password` and `headers`: those travel only in `sealed_credentials`. */
  args: z.record(z.string(), z.unknown()),
  /** Wall-clock ms after which the manager counts the job as failed. */
  deadline_ms: z.number(),
  task_uuid: z.string(),
  /** scheduler/job/sealed.ts seal(schedulerSecret, { password?, headers? }), when the job has credentials. */
  sealed_credentials: z.string().optional(),
});

/** What a scheduler cluster's worker receives: everything needed to run, credentials sealed. */
export type JobMessage = z.output<typeof jobMessageSchema>;
