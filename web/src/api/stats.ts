import { useEffect, useState } from 'preact/hooks';
import type { Stats } from './types';

type Listener = (value: Stats) => void;

/**
 * The latest known counts per poll, from vote answers, GET .../stats and live pushes. Votes are
 * never withdrawn, so counts only grow: an answer that arrives late (a refetch overtaken by a
 * push) never replaces newer counts.
 */
class StatsCache {
  private readonly values = new Map<number, Stats>();
  private readonly listeners = new Map<number, Set<Listener>>();

  get(pollId: number): Stats | undefined {
    return this.values.get(pollId);
  }

  put(value: Stats): void {
    const current = this.values.get(value.pollId);
    const merged = current ? mergeStats(current, value) : value;
    if (merged === current) {
      return;
    }
    this.values.set(value.pollId, merged);
    for (const listener of [...(this.listeners.get(value.pollId) ?? [])]) {
      listener(merged);
    }
  }

  watch(pollId: number, listener: Listener): () => void {
    let set = this.listeners.get(pollId);
    if (!set) {
      set = new Set();
      this.listeners.set(pollId, set);
    }
    set.add(listener);
    return () => {
      set.delete(listener);
      if (set.size === 0) {
        this.listeners.delete(pollId);
      }
    };
  }
}

/** The newer of two snapshots of one poll: more votes wins, a tie takes the incoming one. */
export function mergeStats(current: Stats, incoming: Stats): Stats {
  return incoming.totalVotes >= current.totalVotes ? incoming : current;
}

export const stats = new StatsCache();

export function usePollStats(pollId: number): Stats | undefined {
  const [value, setValue] = useState(() => stats.get(pollId));
  useEffect(() => {
    setValue(stats.get(pollId));
    return stats.watch(pollId, setValue);
  }, [pollId]);
  return value;
}
