import type { ComponentChildren } from 'preact';
import { createStore, useStore } from './lib/store';

/** The current URL's path and query, the single source of truth for which screen shows. */
export interface Location {
  path: string;
  query: URLSearchParams;
}

const current = createStore<Location>(read());

function read(): Location {
  return { path: window.location.pathname, query: new URLSearchParams(window.location.search) };
}

window.addEventListener('popstate', () => current.set(read()));

export function useLocation(): Location {
  return useStore(current);
}

export function navigate(to: string, options: { replace?: boolean } = {}): void {
  const here = window.location.pathname + window.location.search;
  if (to !== here) {
    if (options.replace) {
      history.replaceState(null, '', to);
    } else {
      history.pushState(null, '', to);
    }
  }
  current.set(read());
  if (!options.replace) {
    window.scrollTo(0, 0);
  }
}

/** A same-origin path to return to after signing in; anything else falls back to the feed. */
export function safeNext(next: string | null): string {
  return next && next.startsWith('/') && !next.startsWith('//') ? next : '/';
}

interface LinkProps {
  href: string;
  children: ComponentChildren;
  class?: string;
  'aria-current'?: 'page' | undefined;
  onClick?: (event: MouseEvent) => void;
}

/** An <a> that changes screen without a page load (a modified click still opens a new tab). */
export function Link({ href, onClick, ...rest }: LinkProps) {
  return (
    <a
      {...rest}
      href={href}
      onClick={(event) => {
        onClick?.(event);
        if (event.defaultPrevented || event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) {
          return;
        }
        event.preventDefault();
        navigate(href);
      }}
    />
  );
}

/** `/?tag=go&q=fast`: the feed URL for a filter. */
export function feedUrl(filter: { tag?: string | undefined; q?: string | undefined }): string {
  const params = new URLSearchParams();
  if (filter.tag) {
    params.set('tag', filter.tag);
  }
  if (filter.q) {
    params.set('q', filter.q);
  }
  const search = params.toString();
  return search ? `/?${search}` : '/';
}
