import { useEffect, useState } from 'preact/hooks';
import { feedUrl, navigate } from '../../router';

/** Search by words and show the tag filter; both live in the URL (`/?tag=go&q=fast`). */
export function FilterBar({ tag, q }: { tag: string | undefined; q: string | undefined }) {
  const [text, setText] = useState(q ?? '');
  useEffect(() => setText(q ?? ''), [q]);

  return (
    <div class="filters">
      <form
        role="search"
        class="search"
        onSubmit={(event) => {
          event.preventDefault();
          navigate(feedUrl({ tag, q: text.trim() || undefined }));
        }}
      >
        <label for="feed-q" class="visually-hidden">
          Search polls
        </label>
        <input
          id="feed-q"
          type="search"
          name="q"
          value={text}
          maxLength={200}
          placeholder="Search polls"
          autoComplete="off"
          onInput={(event) => setText(event.currentTarget.value)}
        />
        <button type="submit" class="button">
          Search
        </button>
      </form>
      {(tag || q) && (
        <ul class="active-filters" aria-label="Active filters">
          {tag && (
            <li>
              <button type="button" class="chip" onClick={() => navigate(feedUrl({ q }))}>
                <span class="visually-hidden">Remove filter </span>#{tag}
                <span aria-hidden="true"> ×</span>
              </button>
            </li>
          )}
          {q && (
            <li>
              <button type="button" class="chip" onClick={() => navigate(feedUrl({ tag }))}>
                <span class="visually-hidden">Remove search </span>“{q}”
                <span aria-hidden="true"> ×</span>
              </button>
            </li>
          )}
          <li>
            <button type="button" class="link-button" onClick={() => navigate('/')}>
              Clear all
            </button>
          </li>
        </ul>
      )}
    </div>
  );
}
