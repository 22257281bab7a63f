import type { Stats } from '../api';
import { plural } from '../lib/format';

interface ResultsProps {
  stats: Stats | undefined;
  /** Shown before the caller voted (their own poll): say these are the counts so far. */
  soFar?: boolean;
  options: readonly string[];
  myVote: number | null;
  labelledBy: string;
}

/** Counts and percentages per option; the bars are decoration, the numbers are the content. */
export function Results({ stats, soFar = false, options, myVote, labelledBy }: ResultsProps) {
  const rows = options.map((text, index) => {
    const row = stats?.options.find((option) => option.index === index);
    return { text, index, votes: row?.votes ?? null, percentage: row?.percentage ?? null };
  });
  return (
    <div class="results">
      <p class="results-total" aria-live="polite">
        {stats ? `${soFar ? 'Results so far: ' : ''}${plural(stats.totalVotes, 'vote')}` : 'Counting votes…'}
      </p>
      <ul class="results-list" aria-labelledby={labelledBy}>
        {rows.map((row) => (
          <li key={row.index} class={row.index === myVote ? 'result mine' : 'result'}>
            <div class="result-line">
              <span class="result-text">
                {row.text}
                {row.index === myVote && <span class="you"> · your vote</span>}
              </span>
              <span class="result-figures">
                {row.percentage === null ? '–' : `${formatPercent(row.percentage)}`}
                <span class="result-count"> ({row.votes === null ? '–' : plural(row.votes, 'vote')})</span>
              </span>
            </div>
            <span class="bar" aria-hidden="true">
              <span class="bar-fill" style={{ width: `${row.percentage ?? 0}%` }} />
            </span>
          </li>
        ))}
      </ul>
    </div>
  );
}

function formatPercent(value: number): string {
  return `${value.toLocaleString('en', { maximumFractionDigits: 1 })}%`;
}
