import { useEffect, useLayoutEffect, useRef } from 'preact/hooks';
import { live, session } from './api';
import { Header } from './components/Header';
import { useStore } from './lib/store';
import { navigate, safeNext, useLocation, type Location } from './router';
import { AuthScreen } from './screens/AuthScreen';
import { CreatePollScreen } from './screens/CreatePollScreen';
import { FeedScreen } from './screens/feed/FeedScreen';
import { NotFoundScreen } from './screens/NotFoundScreen';
import { PollScreen } from './screens/PollScreen';
import { ProfileScreen } from './screens/ProfileScreen';

const kPublic = new Set(['/login', '/signup']);

export function App() {
  const user = useStore(session);
  const location = useLocation();
  const signedIn = user !== null;

  useEffect(() => {
    if (signedIn) {
      live.start();
    } else {
      live.stop();
    }
  }, [signedIn]);

  const redirect = redirectFor(signedIn, location);
  useLayoutEffect(() => {
    if (redirect) {
      navigate(redirect, { replace: true });
    }
  }, [redirect]);
  useFocusOnNavigation(location.path);

  return (
    <>
      <a class="skip-link" href="#main">
        Skip to content
      </a>
      <Header signedIn={signedIn} />
      <main id="main" tabIndex={-1}>
        {redirect ? null : screenFor(location)}
      </main>
    </>
  );
}

function redirectFor(signedIn: boolean, { path, query }: Location): string | null {
  if (!signedIn && !kPublic.has(path)) {
    const search = query.toString();
    const here = search ? `${path}?${search}` : path;
    return here === '/' ? '/login' : `/login?next=${encodeURIComponent(here)}`;
  }
  if (signedIn && kPublic.has(path)) {
    return safeNext(query.get('next'));
  }
  return null;
}

function screenFor({ path }: Location) {
  if (path === '/' || path === '/index.html') {
    return <FeedScreen />;
  }
  if (path === '/login' || path === '/signup') {
    return <AuthScreen key={path} mode={path === '/login' ? 'login' : 'signup'} />;
  }
  if (path === '/new') {
    return <CreatePollScreen />;
  }
  if (path === '/me') {
    return <ProfileScreen />;
  }
  const poll = /^\/polls\/([1-9][0-9]{0,17})$/.exec(path);
  if (poll) {
    return <PollScreen key={poll[1]} id={Number(poll[1])} />;
  }
  return <NotFoundScreen />;
}

/** A screen change moves the keyboard and screen readers to the new screen's heading. */
function useFocusOnNavigation(path: string) {
  const first = useRef(true);
  useEffect(() => {
    if (first.current) {
      first.current = false;
      return;
    }
    requestAnimationFrame(() => document.querySelector<HTMLElement>('main h1')?.focus({ preventScroll: true }));
  }, [path]);
}
