// Full (major) GCs as Node reports them: the memory trimmer and the idle GC
// both act on them.
import { constants, PerformanceObserver } from "node:perf_hooks";

/** Calls listener after every major GC (reported asynchronously, within a turn of the event loop); returns the unsubscribe. */
export function onMajorGc(listener: () => void): () => void {
  const observer = new PerformanceObserver((list) => {
    for (const entry of list.getEntries()) {
      if ((entry as { detail?: { kind?: number } }).detail?.kind === constants.NODE_PERFORMANCE_GC_MAJOR) listener();
    }
  });
  observer.observe({ entryTypes: ["gc"] });
  return () => observer.disconnect();
}
