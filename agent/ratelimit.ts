/**
 * Token buckets for bytes per second (download, upload, back-to-source), shared per agent. A taker
 * may overdraw: the debt is paid by waiting, so a 4 MiB chunk through a 1 MiB/s bucket takes ~4 s
 * instead of never passing. Time comes from an injectable clock so tests control it.
 */
export interface Clock {
  now(): number;
  sleep(ms: number): Promise<void>;
}

export const realClock: Clock = {
  now: () => performance.now(),
  sleep: (ms) => new Promise((resolve) => setTimeout(resolve, ms)),
};

/** Above this rate a bucket never waits: the configured default (50 GiB/s) means "unlimited". */
const UNLIMITED = 10 * 1024 ** 3;

export class TokenBucket {
  private tokens: number;
  private last: number;
  readonly burst: number;

  /** `rate` in units per second; burst defaults to a tenth of a second of rate (at least 64 KiB). */
  constructor(readonly rate: number, private readonly clock: Clock = realClock, burst?: number) {
    this.burst = burst ?? Math.max(rate / 10, 64 * 1024);
    this.tokens = this.burst;
    this.last = clock.now();
  }

  get unlimited(): boolean {
    return this.rate <= 0 || this.rate >= UNLIMITED;
  }

  private refill(): void {
    const now = this.clock.now();
    this.tokens = Math.min(this.burst, this.tokens + ((now - this.last) / 1000) * this.rate);
    this.last = now;
  }

  /** Takes `n` tokens, waiting as long as the debt lasts. Never throws. */
  async take(n: number): Promise<void> {
    if (this.unlimited || n <= 0) return;
    this.refill();
    this.tokens -= n;
    if (this.tokens < 0) await this.clock.sleep((-this.tokens / this.rate) * 1000);
  }

  /**
   * Takes `n` tokens now and returns how many milliseconds the caller should wait to pay the debt
   * (0: none), for callers that pause a socket instead of awaiting.
   */
  takeNow(n: number): number {
    if (this.unlimited || n <= 0) return 0;
    this.refill();
    this.tokens -= n;
    return this.tokens < 0 ? (-this.tokens / this.rate) * 1000 : 0;
  }

  /** Current balance (negative = debt), for tests and metrics. */
  available(): number {
    this.refill();
    return this.tokens;
  }
}
