//! `HeraldClient`: what an application uses. It owns (or, in a follower tab, listens to) the one
//! socket of the browser, turns frames into events, and gives the inbox API.
import { Connection } from "./connection.js";
import { InboxApi } from "./inbox.js";
import { cursorAfter } from "./protocol.js";
import { canShare, joinTabs } from "./share.js";
import { cursorStore } from "./storage.js";
export class HeraldClient {
    opts;
    inbox;
    /** Whether this tab holds the socket (always true without sharing). */
    leader = false;
    status = "stopped";
    statusDetail = {};
    conn = null;
    tab = null;
    lastUnread = null;
    /** The newest notification cursor this tab handled: copies relayed again are dropped. */
    seen = null;
    listeners = {
        notification: new Set(),
        read: new Set(),
        unread: new Set(),
        reset: new Set(),
        status: new Set(),
        frame: new Set(),
    };
    constructor(opts) {
        this.opts = opts;
        const base = opts.url.replace(/\/+$/, "");
        this.inbox = new InboxApi(base.replace(/^ws/, "http"), opts.token, opts.fetch);
    }
    on(event, cb) {
        this.listeners[event].add(cb);
        return () => this.listeners[event].delete(cb);
    }
    start() {
        if (this.conn || this.tab)
            return;
        const group = `herald:${this.opts.user ?? "default"}`;
        if (this.opts.share ?? canShare()) {
            this.tab = joinTabs(group, () => this.lead(group), (msg) => this.fromLeader(msg));
            this.tab.post({ t: "ask" });
        }
        else {
            this.lead(group);
        }
    }
    stop() {
        this.tab?.close();
        this.tab = null;
        this.conn?.stop();
        this.conn = null;
        this.leader = false;
        this.setStatus("stopped", {});
    }
    /** Sockets opened by this tab (0 in a follower tab): for tests and diagnostics. */
    get socketsOpened() {
        return this.conn?.opened ?? 0;
    }
    /** In-band token refreshes sent by this tab. */
    get refreshes() {
        return this.conn?.refreshed ?? 0;
    }
    lead(group) {
        this.leader = true;
        const wsBase = this.opts.url.replace(/\/+$/, "").replace(/^http/, "ws");
        const conn = new Connection({
            url: `${wsBase}/v1/ws`,
            token: this.opts.token,
            cursor: cursorStore(`${group}:cursor`, this.opts.storage),
            backoff: this.opts.backoff,
            openTimeoutMs: this.opts.openTimeoutMs,
            socket: this.opts.socket,
            onFrame: (frame) => {
                this.tab?.post({ t: "frame", frame });
                this.dispatch(frame);
            },
            onStatus: (status, detail) => {
                this.tab?.post({ t: "status", status });
                this.setStatus(status, detail ?? {});
            },
        });
        this.conn = conn;
        conn.start();
        return () => {
            conn.stop();
            if (this.conn === conn)
                this.conn = null;
            this.leader = false;
        };
    }
    fromLeader(msg) {
        switch (msg.t) {
            case "frame":
                this.dispatch(msg.frame);
                break;
            case "status":
                this.setStatus(msg.status, {});
                break;
            case "ask":
                // A tab just joined: tell it what it missed of the state.
                if (this.leader) {
                    this.tab?.post({ t: "status", status: this.status });
                    if (this.lastUnread != null)
                        this.tab?.post({ t: "frame", frame: { type: "unread", count: this.lastUnread } });
                }
                break;
        }
    }
    dispatch(frame) {
        if (frame.type === "notification") {
            if (!cursorAfter(frame.cursor, this.seen))
                return;
            this.seen = frame.cursor;
        }
        this.emit("frame", frame);
        switch (frame.type) {
            case "notification":
                this.emit("notification", frame.notification, { cursor: frame.cursor, replay: frame.replay });
                break;
            case "read":
                this.emit("read", frame.ids, frame.read ?? true);
                break;
            case "unread":
                this.lastUnread = frame.count;
                this.emit("unread", frame.count);
                break;
            case "reset":
                this.emit("reset", frame.reason);
                break;
            default:
                break;
        }
    }
    setStatus(status, detail) {
        this.status = status;
        this.statusDetail = detail;
        this.emit("status", status, detail);
    }
    emit(event, ...args) {
        for (const cb of this.listeners[event]) {
            try {
                cb(...args);
            }
            catch (e) {
                console.error("herald: a listener failed", e);
            }
        }
    }
}
