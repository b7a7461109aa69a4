//! Where the last cursor is kept: `localStorage` in a browser (shared by the tabs of an origin,
//! so any tab resumes where the last one was), memory elsewhere.

export interface CursorStore {
  get(): string | null;
  set(cursor: string): void;
}

/** The subset of the Web Storage API used. */
export interface KeyValue {
  getItem(key: string): string | null;
  setItem(key: string, value: string): void;
}

export function cursorStore(key: string, storage?: KeyValue | null): CursorStore {
  const kv = storage ?? defaultStorage();
  if (!kv) {
    let cursor: string | null = null;
    return { get: () => cursor, set: (c) => void (cursor = c) };
  }
  return {
    get: () => {
      try {
        return kv.getItem(key);
      } catch {
        return null;
      }
    },
    set: (c) => {
      try {
        kv.setItem(key, c);
      } catch {
        // Storage full or denied (private mode): the cursor lives on in the connection.
      }
    },
  };
}

function defaultStorage(): KeyValue | null {
  try {
    const ls = (globalThis as { localStorage?: KeyValue }).localStorage;
    return ls ?? null;
  } catch {
    return null;
  }
}
