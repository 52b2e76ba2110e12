/**
 * SQS queue (@aws-sdk/client-sqs). Each queue name maps to a standard SQS queue
 * `<queuePrefix><name>`, created on first use together with its dead-letter queue
 * `<queuePrefix><name>-dlq` and a RedrivePolicy of maxReceiveCount = `maxReceives`: SQS itself
 * moves a message received more than K times. Long polling, visibility and redelivery are SQS's own.
 *
 * Differences from the port, inherent to SQS: delays, visibilities and waits are whole seconds
 * (rounded up; waits at most 20 s); standard queues do not deduplicate, so `dedupId` is honoured
 * per client process only (a 5-minute in-memory window) — use the SQL or Redis queues where
 * cross-process dedup matters; a stale receipt may still delete the message (SQS semantics).
 */
import {
  ChangeMessageVisibilityCommand,
  CreateQueueCommand,
  DeleteMessageCommand,
  GetQueueAttributesCommand,
  GetQueueUrlCommand,
  ReceiveMessageCommand,
  SendMessageCommand,
  SQSClient,
} from '@aws-sdk/client-sqs';
import { InvalidError, NotFoundError } from '../errors.js';
import { awsClientConfig, awsError } from '../kv/aws.js';
import { toJson } from '../kv/common.js';
import { withTimeout } from '../clock.js';
import type { SqsQueueConfig } from '../store-config.js';
import { DEDUP_WINDOW_MS, checkQueueName, checkVisibility, resolveReceive, resolveSend, type QueueOptions } from './common.js';
import { deadLetterName, type Queue, type QueueMessage, type ReceiveOptions, type SendOptions } from './port.js';

const seconds = (ms: number) => Math.ceil(ms / 1000);

export class SqsQueue implements Queue {
  readonly kind = 'sqs';
  private readonly urls = new Map<string, Promise<string>>();
  private readonly dedup = new Map<string, { id: string; until: number }>();
  private readonly inflight = new Set<AbortController>();
  private closed = false;

  private constructor(private readonly sqs: SQSClient, private readonly prefix: string, private readonly timeoutMs: number, private readonly options: QueueOptions) {}

  /** Builds the client (queues are created lazily on first use). */
  static async open(config: Pick<SqsQueueConfig, 'region' | 'endpoint' | 'queuePrefix' | 'timeoutMs' | 'maxReceives' | 'visibilityMs'>): Promise<SqsQueue> {
    const sqs = new SQSClient(awsClientConfig(config.region, config.endpoint, 'AWS_ENDPOINT_URL_SQS', config.timeoutMs));
    return new SqsQueue(sqs, config.queuePrefix, config.timeoutMs, { maxReceives: config.maxReceives, visibilityMs: config.visibilityMs });
  }

  /** Runs one SDK call bounded by `ms` (default the configured timeout), aborting it on expiry or on `signal`. */
  private async call<T>(what: string, fn: (abortSignal: AbortSignal) => Promise<T>, ms = this.timeoutMs, signal?: AbortSignal): Promise<T> {
    if (this.closed) throw new InvalidError('sqs queue is closed');
    const ctl = new AbortController();
    const onAbort = () => ctl.abort();
    signal?.addEventListener('abort', onAbort, { once: true });
    this.inflight.add(ctl);
    try {
      return await withTimeout(fn(ctl.signal), ms + 500, `sqs ${what}`, 'UNAVAILABLE');
    } catch (err) {
      ctl.abort();
      throw awsError(err, `sqs ${what}`);
    } finally {
      signal?.removeEventListener('abort', onAbort);
      this.inflight.delete(ctl);
    }
  }

  private physical(queue: string): string {
    const name = `${this.prefix}${queue}`;
    if (name.length > 80) throw new InvalidError(`SQS queue name ${name} is longer than 80 characters`);
    return name;
  }

  private async ensure(name: string, attributes: Record<string, string>): Promise<string> {
    try {
      return (await this.call('create queue', (abortSignal) => this.sqs.send(new CreateQueueCommand({ QueueName: name, Attributes: attributes }), { abortSignal }))).QueueUrl!;
    } catch (err) {
      // Exists with other attributes (e.g. another maxReceives): use it as it is.
      if ((err as { details?: { driverCode?: string } }).details?.driverCode !== 'QueueAlreadyExists' && !/already exists/i.test((err as Error).message)) throw err;
      return (await this.call('get queue url', (abortSignal) => this.sqs.send(new GetQueueUrlCommand({ QueueName: name }), { abortSignal }))).QueueUrl!;
    }
  }

  /** The URL of a queue, creating it (and its dead-letter queue with the redrive policy) once. */
  private url(queue: string): Promise<string> {
    checkQueueName(queue);
    let u = this.urls.get(queue);
    if (!u) {
      u = (async () => {
        if (queue.endsWith('-dlq')) return this.ensure(this.physical(queue), {});
        const dlqUrl = await this.ensure(this.physical(deadLetterName(queue)), {});
        const attrs = await this.call('queue attributes', (abortSignal) =>
          this.sqs.send(new GetQueueAttributesCommand({ QueueUrl: dlqUrl, AttributeNames: ['QueueArn'] }), { abortSignal }),
        );
        const redrive = JSON.stringify({ deadLetterTargetArn: attrs.Attributes!.QueueArn, maxReceiveCount: this.options.maxReceives });
        return this.ensure(this.physical(queue), { RedrivePolicy: redrive });
      })();
      this.urls.set(queue, u);
      u.catch(() => this.urls.delete(queue));
    }
    return u;
  }

  async send<T = unknown>(queue: string, body: T, options?: SendOptions): Promise<string> {
    checkQueueName(queue);
    const { delayMs, dedupId } = resolveSend(options);
    const json = toJson(body);
    const dkey = `${queue}\n${dedupId}`;
    if (dedupId !== undefined) {
      const prior = this.dedup.get(dkey);
      if (prior && prior.until > Date.now()) return prior.id;
    }
    const url = await this.url(queue);
    const res = await this.call('send', (abortSignal) =>
      this.sqs.send(new SendMessageCommand({ QueueUrl: url, MessageBody: json, DelaySeconds: seconds(delayMs) }), { abortSignal }),
    );
    const id = res.MessageId!;
    if (dedupId !== undefined) {
      const now = Date.now();
      this.dedup.set(dkey, { id, until: now + DEDUP_WINDOW_MS });
      if (this.dedup.size > 10_000) for (const [k, v] of this.dedup) if (v.until <= now) this.dedup.delete(k);
    }
    return id;
  }

  async receive<T = unknown>(queue: string, options?: ReceiveOptions): Promise<QueueMessage<T>[]> {
    checkQueueName(queue);
    const r = resolveReceive(options, this.options.visibilityMs);
    if (r.signal?.aborted) return [];
    const url = await this.url(queue);
    const wait = Math.min(20, seconds(r.waitMs));
    try {
      const res = await this.call(
        'receive',
        (abortSignal) =>
          this.sqs.send(
            new ReceiveMessageCommand({
              QueueUrl: url,
              MaxNumberOfMessages: r.max,
              WaitTimeSeconds: wait,
              VisibilityTimeout: seconds(r.visibilityMs),
              MessageSystemAttributeNames: ['ApproximateReceiveCount', 'SentTimestamp'],
            }),
            { abortSignal, requestTimeout: wait * 1000 + this.timeoutMs },
          ),
        wait * 1000 + this.timeoutMs,
        r.signal,
      );
      return (res.Messages ?? []).map((m) => ({
        id: m.MessageId!,
        body: JSON.parse(m.Body!) as T,
        receipt: m.ReceiptHandle!,
        receiveCount: Number(m.Attributes?.ApproximateReceiveCount ?? 1),
        sentAt: Number(m.Attributes?.SentTimestamp ?? 0),
      }));
    } catch (err) {
      if (r.signal?.aborted || this.closed) return [];
      throw err;
    }
  }

  private notFound(err: unknown, queue: string): Error {
    const code = (err as { details?: { driverCode?: string } }).details?.driverCode ?? '';
    if (/ReceiptHandleIsInvalid|MessageNotInflight|InvalidParameterValue/.test(code)) return new NotFoundError(`no message in ${queue} holds that receipt`);
    return err as Error;
  }

  async ack(queue: string, receipt: string): Promise<void> {
    const url = await this.url(queue);
    await this.call('ack', (abortSignal) => this.sqs.send(new DeleteMessageCommand({ QueueUrl: url, ReceiptHandle: receipt }), { abortSignal })).catch((err) => {
      throw this.notFound(err, queue);
    });
  }

  async extend(queue: string, receipt: string, visibilityMs: number): Promise<void> {
    checkVisibility(visibilityMs);
    const url = await this.url(queue);
    await this.call('extend', (abortSignal) =>
      this.sqs.send(new ChangeMessageVisibilityCommand({ QueueUrl: url, ReceiptHandle: receipt, VisibilityTimeout: seconds(visibilityMs) }), { abortSignal }),
    ).catch((err) => {
      throw this.notFound(err, queue);
    });
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const c of this.inflight) c.abort();
    this.sqs.destroy();
  }
}
