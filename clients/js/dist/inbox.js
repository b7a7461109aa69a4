//! The inbox over HTTP (`/v1/inbox`, `/v1/preferences`) with the user's token.
export class HttpError extends Error {
    status;
    code;
    constructor(status, code, message) {
        super(message);
        this.status = status;
        this.code = code;
        this.name = "HttpError";
    }
}
const MAX_WAIT_FOR_STORE_MS = 60_000;
/** The waits between tries of a `404` (then the last one repeats). */
const STORE_RETRY_MS = [100, 200, 400, 800, 1000];
export class InboxApi {
    base;
    token;
    fetchImpl;
    constructor(base, token, fetchImpl = (...a) => fetch(...a)) {
        this.base = base;
        this.token = token;
        this.fetchImpl = fetchImpl;
    }
    /** One page, newest first; pass `next` as `before` for the following page. */
    list(opts = {}) {
        const q = new URLSearchParams();
        if (opts.limit != null)
            q.set("limit", String(opts.limit));
        if (opts.before)
            q.set("before", opts.before);
        if (opts.unread)
            q.set("unread", "true");
        if (opts.kind)
            q.set("kind", opts.kind);
        if (opts.archived)
            q.set("archived", "true");
        const qs = q.toString();
        return this.call("GET", `/v1/inbox${qs ? `?${qs}` : ""}`);
    }
    async unreadCount() {
        return (await this.call("GET", "/v1/inbox/unread-count")).unread;
    }
    read(id, opts = {}) {
        return this.change(id, "read", opts);
    }
    unread(id, opts = {}) {
        return this.change(id, "unread", opts);
    }
    /** Archives (and so marks read) one notification. */
    archive(id, opts = {}) {
        return this.change(id, "archive", opts);
    }
    readAll() {
        return this.call("POST", "/v1/inbox/read-all");
    }
    preferences() {
        return this.call("GET", "/v1/preferences");
    }
    setPreferences(p) {
        return this.call("PUT", "/v1/preferences", p);
    }
    /** A read-state change, tried again on `404` until `waitForStoreMs` has passed. */
    async change(id, what, opts) {
        const wait = Math.min(Math.max(Number(opts.waitForStoreMs) || 0, 0), MAX_WAIT_FOR_STORE_MS);
        const deadline = Date.now() + wait;
        for (let tries = 0;; tries++) {
            try {
                return await this.call("POST", `/v1/inbox/${encodeURIComponent(id)}/${what}`);
            }
            catch (e) {
                const left = deadline - Date.now();
                if (!(e instanceof HttpError && e.status === 404) || left <= 0 || opts.signal?.aborted)
                    throw e;
                const wait = Math.min(left, STORE_RETRY_MS[Math.min(tries, STORE_RETRY_MS.length - 1)]);
                await new Promise((r) => setTimeout(r, wait));
            }
        }
    }
    /** One request; a 401 gets a fresh token and one more try. */
    async call(method, path, body) {
        let fresh = false;
        for (;;) {
            const token = await this.token({ fresh });
            const res = await this.fetchImpl(this.base + path, {
                method,
                headers: {
                    authorization: `Bearer ${token}`,
                    ...(body === undefined ? {} : { "content-type": "application/json" }),
                },
                body: body === undefined ? undefined : JSON.stringify(body),
            });
            if (res.status === 401 && !fresh) {
                fresh = true;
                continue;
            }
            const text = await res.text();
            const json = text ? JSON.parse(text) : null;
            if (!res.ok) {
                const err = json?.error ?? {};
                throw new HttpError(res.status, err.code ?? "http", err.message ?? `HTTP ${res.status}`);
            }
            return json;
        }
    }
}
