export interface BackoffOptions {
    /** The first ceiling, in ms (default 500). */
    baseMs?: number;
    /** The largest ceiling, in ms (default 30 000). */
    maxMs?: number;
}
export declare class Backoff {
    private readonly random;
    private attempt;
    private readonly base;
    private readonly max;
    constructor(opts?: BackoffOptions, random?: () => number);
    /** The next delay: uniform over [0, min(max, base × 2^attempt)). */
    next(): number;
    reset(): void;
}
