//! The frames of Herald's WebSocket protocol and the shapes of its inbox API, as TypeScript types.
/** Close codes the client acts on. */
export const Close = {
    NORMAL: 1000,
    GOING_AWAY: 1001,
    UNAUTHENTICATED: 4001,
    FORBIDDEN: 4003,
    PROTOCOL: 4008,
    TOO_SLOW: 4029,
};
/** Whether cursor `a` comes after `b`. Cursors are opaque to applications; Herald's are
 * decimal numbers that only grow, so a longer one is larger and equal lengths compare as text. */
export function cursorAfter(a, b) {
    if (b == null)
        return true;
    return a.length !== b.length ? a.length > b.length : a > b;
}
