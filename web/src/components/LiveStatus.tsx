import { live, type LiveState } from '../api';
import { useStore } from '../lib/store';

const kLabels: Record<LiveState, string> = {
  idle: '',
  connecting: 'Connecting…',
  live: 'Live',
  reconnecting: 'Reconnecting…',
  offline: 'Offline',
};

/** Whether results update by themselves right now. */
export function LiveStatus() {
  const state = useStore(live.state);
  if (state === 'idle') {
    return null;
  }
  return (
    <p class={`live-status ${state}`} role="status" title="Live updates of results">
      <span class="dot" aria-hidden="true" />
      <span class="visually-hidden">Live updates: </span>
      {kLabels[state]}
    </p>
  );
}
