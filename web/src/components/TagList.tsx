import { feedUrl, Link } from '../router';

/** A poll's tags; each one opens the feed filtered by it. */
export function TagList({ tags, q }: { tags: readonly string[]; q?: string | undefined }) {
  return (
    <ul class="tags" aria-label="Tags">
      {tags.map((tag) => (
        <li key={tag}>
          <Link class="tag" href={feedUrl({ tag, q })}>
            <span class="visually-hidden">Show polls tagged </span>#{tag}
          </Link>
        </li>
      ))}
    </ul>
  );
}
