import { createStore } from '../lib/store';
import type { Session } from './types';

const kKey = 'vote.session';

/** The signed-in session (token and user), kept in localStorage across reloads. */
export const session = createStore<Session | null>(load());

session.subscribe((value) => {
  try {
    if (value) {
      localStorage.setItem(kKey, JSON.stringify(value));
    } else {
      localStorage.removeItem(kKey);
    }
  } catch {
    // Storage can be full or disabled (private mode): the session then lasts this page only.
  }
});

// Another tab signed in or out.
window.addEventListener('storage', (event) => {
  if (event.key === kKey) {
    session.set(load());
  }
});

function load(): Session | null {
  try {
    const raw = localStorage.getItem(kKey);
    if (!raw) {
      return null;
    }
    const value = JSON.parse(raw) as Session;
    if (typeof value?.token !== 'string' || Date.parse(value.expiresAt) <= Date.now()) {
      return null;
    }
    return value;
  } catch {
    return null;
  }
}

export function token(): string | null {
  const value = session.get();
  if (value && Date.parse(value.expiresAt) <= Date.now()) {
    session.set(null);
    return null;
  }
  return value?.token ?? null;
}
