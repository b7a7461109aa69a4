//! Where the last cursor is kept: `localStorage` in a browser (shared by the tabs of an origin,
//! so any tab resumes where the last one was), memory elsewhere.
export function cursorStore(key, storage) {
    const kv = storage ?? defaultStorage();
    if (!kv) {
        let cursor = null;
        return { get: () => cursor, set: (c) => void (cursor = c) };
    }
    return {
        get: () => {
            try {
                return kv.getItem(key);
            }
            catch {
                return null;
            }
        },
        set: (c) => {
            try {
                kv.setItem(key, c);
            }
            catch {
                // Storage full or denied (private mode): the cursor lives on in the connection.
            }
        },
    };
}
function defaultStorage() {
    try {
        const ls = globalThis.localStorage;
        return ls ?? null;
    }
    catch {
        return null;
    }
}
