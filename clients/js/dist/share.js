//! One socket per browser: the tabs of an origin elect a leader with the Web Locks API, the
//! leader alone holds the WebSocket, and it relays every frame to the other tabs over a
//! BroadcastChannel. When the leader's tab closes its lock is released, the next tab takes it
//! and resumes from the cursor the last leader kept in `localStorage`. Where either API is
//! missing (old browsers, Node), every tab keeps its own socket.
export function canShare() {
    const nav = globalThis.navigator;
    return typeof BroadcastChannel !== "undefined" && !!nav?.locks;
}
/**
 * Joins the group `name`. `lead` runs when this tab becomes the leader and returns how to stop
 * leading; `receive` gets what other tabs post.
 */
export function joinTabs(name, lead, receive) {
    const channel = new BroadcastChannel(name);
    channel.onmessage = (ev) => receive(ev.data);
    let release = null;
    let closed = false;
    const locks = globalThis.navigator.locks;
    void locks.request(`${name}:leader`, async () => {
        if (closed)
            return;
        const stop = lead();
        // Held for as long as this tab lives or until close(): the browser frees it with the tab.
        await new Promise((resolve) => (release = resolve));
        stop();
    });
    return {
        post: (msg) => channel.postMessage(msg),
        close: () => {
            closed = true;
            release?.();
            channel.close();
        },
    };
}
