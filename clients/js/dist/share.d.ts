import type { Status } from "./connection.js";
import type { ServerFrame } from "./protocol.js";
export type Relay = {
    t: "frame";
    frame: ServerFrame;
} | {
    t: "status";
    status: Status;
} | {
    t: "ask";
};
export declare function canShare(): boolean;
export interface Tab {
    /** Sends to every other tab of the group. */
    post(msg: Relay): void;
    /** Gives up leadership (or the wait for it) and leaves the group. */
    close(): void;
}
/**
 * Joins the group `name`. `lead` runs when this tab becomes the leader and returns how to stop
 * leading; `receive` gets what other tabs post.
 */
export declare function joinTabs(name: string, lead: () => () => void, receive: (msg: Relay) => void): Tab;
