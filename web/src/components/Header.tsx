import { Link, useLocation } from '../router';
import { LiveStatus } from './LiveStatus';

const kNav = [
  { href: '/', label: 'Feed' },
  { href: '/new', label: 'New poll' },
  { href: '/me', label: 'Profile' },
] as const;

export function Header({ signedIn }: { signedIn: boolean }) {
  const { path } = useLocation();
  return (
    <header class="topbar">
      <div class="topbar-inner">
        <Link href="/" class="brand">
          <span class="brand-mark" aria-hidden="true">
            ✓
          </span>
          Vote
        </Link>
        {signedIn && <LiveStatus />}
        {signedIn && (
          <nav aria-label="Main" class="nav">
            <ul>
              {kNav.map((item) => (
                <li key={item.href}>
                  <Link href={item.href} aria-current={path === item.href ? 'page' : undefined}>
                    {item.label}
                  </Link>
                </li>
              ))}
            </ul>
          </nav>
        )}
      </div>
    </header>
  );
}
