//! Reconnect delays: exponential backoff with full jitter, so a fleet of clients cut at once
//! does not come back at once.
export class Backoff {
    random;
    attempt = 0;
    base;
    max;
    constructor(opts = {}, random = Math.random) {
        this.random = random;
        this.base = opts.baseMs ?? 500;
        this.max = opts.maxMs ?? 30_000;
    }
    /** The next delay: uniform over [0, min(max, base × 2^attempt)). */
    next() {
        const ceiling = Math.min(this.max, this.base * 2 ** this.attempt);
        this.attempt = Math.min(this.attempt + 1, 30);
        return Math.floor(this.random() * ceiling);
    }
    reset() {
        this.attempt = 0;
    }
}
