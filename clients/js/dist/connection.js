//! One WebSocket to a Herald gateway that stays up: `hello` with the token and the last cursor,
//! reconnects with backoff and full jitter (or after the gateway's `reconnect.after_ms`),
//! refreshes the token in-band on `token_expiring`, and drops notifications already seen.
import { Backoff } from "./backoff.js";
import { Close, cursorAfter } from "./protocol.js";
export class Connection {
    opts;
    ws = null;
    stopped = true;
    timer = null;
    backoff;
    needFreshToken = false;
    /** Set by a `reconnect` frame: the gateway's own delay replaces the backoff once. */
    plannedDelay = null;
    /** The newest cursor handled on any socket of this connection. */
    last;
    welcomed = () => { };
    /** Counts sockets opened, for tests and the connection indicator. */
    opened = 0;
    refreshed = 0;
    constructor(opts) {
        this.opts = opts;
        this.backoff = new Backoff(opts.backoff);
        this.last = opts.cursor.get();
    }
    start() {
        if (!this.stopped)
            return;
        this.stopped = false;
        void this.open();
    }
    /** Closes with 1000 and stays closed. */
    stop() {
        this.stopped = true;
        this.welcomed();
        if (this.timer)
            clearTimeout(this.timer);
        this.timer = null;
        const ws = this.ws;
        this.ws = null;
        if (ws) {
            ws.onclose = null;
            ws.onmessage = null;
            try {
                ws.close(Close.NORMAL, "bye");
            }
            catch {
                // Already closed.
            }
        }
        this.opts.onStatus("stopped");
    }
    /** The newest cursor seen (also kept in the cursor store). */
    get cursor() {
        return this.last;
    }
    async open() {
        if (this.stopped)
            return;
        this.opts.onStatus(this.opened === 0 ? "connecting" : "reconnecting");
        let token;
        try {
            token = await this.opts.token({ fresh: this.needFreshToken });
        }
        catch (e) {
            this.retry({ reason: `token provider failed: ${String(e)}` });
            return;
        }
        if (this.stopped)
            return;
        const make = this.opts.socket ?? ((url) => new WebSocket(url));
        let ws;
        try {
            ws = make(this.opts.url);
        }
        catch (e) {
            this.retry({ reason: String(e) });
            return;
        }
        this.ws = ws;
        this.opened += 1;
        const abandon = setTimeout(() => {
            if (this.ws !== ws)
                return;
            this.ws = null;
            ws.onclose = null;
            ws.onmessage = null;
            try {
                ws.close();
            }
            catch {
                // Not open yet.
            }
            this.closed(0, "no welcome in time");
        }, this.opts.openTimeoutMs ?? 10_000);
        this.welcomed = () => clearTimeout(abandon);
        ws.onopen = () => {
            const cursor = this.last ?? this.opts.cursor.get();
            ws.send(JSON.stringify({ type: "hello", token, cursor: cursor ?? null }));
        };
        ws.onmessage = (ev) => {
            if (typeof ev.data !== "string")
                return;
            let frame;
            try {
                frame = JSON.parse(ev.data);
            }
            catch {
                return;
            }
            this.handle(frame);
        };
        ws.onerror = () => {
            // onclose follows with the code.
        };
        ws.onclose = (ev) => {
            clearTimeout(abandon);
            if (this.ws !== ws)
                return;
            this.ws = null;
            this.closed(ev.code, ev.reason);
        };
    }
    handle(frame) {
        switch (frame.type) {
            case "welcome":
                this.welcomed();
                this.needFreshToken = false;
                this.backoff.reset();
                // A first connection starts here: resuming from it after a drop misses nothing.
                if (this.last == null && frame.cursor != null)
                    this.remember(frame.cursor);
                this.opts.onStatus("open");
                break;
            case "notification":
                if (!cursorAfter(frame.cursor, this.last))
                    return;
                this.remember(frame.cursor);
                break;
            case "replayed":
                if (frame.cursor != null && cursorAfter(frame.cursor, this.last))
                    this.remember(frame.cursor);
                break;
            case "token_expiring":
                void this.refresh();
                break;
            case "reconnect":
                this.plannedDelay = Math.max(0, frame.after_ms);
                break;
            default:
                break;
        }
        this.opts.onFrame(frame);
    }
    remember(cursor) {
        this.last = cursor;
        this.opts.cursor.set(cursor);
    }
    async refresh() {
        const ws = this.ws;
        try {
            const token = await this.opts.token({ fresh: true });
            if (ws && this.ws === ws && ws.readyState === 1) {
                ws.send(JSON.stringify({ type: "refresh", token }));
                this.refreshed += 1;
            }
        }
        catch {
            // Without a new token the gateway closes with 4001 at expiry; the reconnect asks again.
        }
    }
    closed(code, reason) {
        if (this.stopped)
            return;
        if (code === Close.FORBIDDEN) {
            // Another user's token or an origin not allowed: retrying cannot help.
            this.stopped = true;
            this.opts.onStatus("stopped", { code, reason });
            return;
        }
        if (code === Close.UNAUTHENTICATED)
            this.needFreshToken = true;
        this.retry({ code, reason });
    }
    retry(detail) {
        if (this.stopped)
            return;
        const delay = this.plannedDelay ?? this.backoff.next();
        this.plannedDelay = null;
        this.opts.onStatus("reconnecting", { ...detail, retryInMs: delay });
        this.timer = setTimeout(() => {
            this.timer = null;
            void this.open();
        }, delay);
    }
}
