//! Reconnect delays: exponential backoff with full jitter, so a fleet of clients cut at once
//! does not come back at once.

export interface BackoffOptions {
  /** The first ceiling, in ms (default 500). */
  baseMs?: number;
  /** The largest ceiling, in ms (default 30 000). */
  maxMs?: number;
}

export class Backoff {
  private attempt = 0;
  private readonly base: number;
  private readonly max: number;

  constructor(opts: BackoffOptions = {}, private readonly random: () => number = Math.random) {
    this.base = opts.baseMs ?? 500;
    this.max = opts.maxMs ?? 30_000;
  }

  /** The next delay: uniform over [0, min(max, base × 2^attempt)). */
  next(): number {
    const ceiling = Math.min(this.max, this.base * 2 ** this.attempt);
    this.attempt = Math.min(this.attempt + 1, 30);
    return Math.floor(this.random() * ceiling);
  }

  reset(): void {
    this.attempt = 0;
  }
}
