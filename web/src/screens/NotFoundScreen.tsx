import { useDocumentTitle } from '../lib/dom';
import { Link } from '../router';

export function NotFoundScreen() {
  useDocumentTitle('Not found');
  return (
    <section class="screen" aria-labelledby="nf-title">
      <h1 id="nf-title" tabIndex={-1}>
        Page not found
      </h1>
      <p>
        There is nothing at this address. <Link href="/">Go to the feed</Link>
      </p>
    </section>
  );
}
