export interface CursorStore {
    get(): string | null;
    set(cursor: string): void;
}
/** The subset of the Web Storage API used. */
export interface KeyValue {
    getItem(key: string): string | null;
    setItem(key: string, value: string): void;
}
export declare function cursorStore(key: string, storage?: KeyValue | null): CursorStore;
