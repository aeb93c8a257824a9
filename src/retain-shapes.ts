// Keeps one process.nextTick object alive for the life of the process.
//
// A memory-reducing GC (V8's memory reducer, its ~100 s watchdog, keyward's
// idle GC) does not retain the hidden classes (maps) of objects that are all
// gone. At idle no tick object is alive, so the maps of Node's tick object (a
// literal with three symbol keys) die, and from then on every nextTick builds
// its object the slow way: 60 → 320 ns per call for the rest of the process in
// a plain node script, ~4 µs of nextTick self time per Check call in keyward
// (node:http2 and streams schedule several ticks per call), 7-15% of the hot
// path's throughput (bench/README.md, "Memory probe"). One live tick object
// keeps its map chain alive, and the fast path with it. Node hands tick
// objects out only to async hooks, so one is enabled for a single nextTick.
import { createHook } from "node:async_hooks";

let exemplar: object | undefined;

/** Captures a tick object once per process and returns it (undefined where Node gave none). */
export function retainTickShape(): object | undefined {
  if (exemplar !== undefined) return exemplar;
  const hook = createHook({
    init(_asyncId, type, _triggerAsyncId, resource) {
      if (type === "TickObject" && exemplar === undefined) exemplar = resource;
    },
  });
  hook.enable();
  try {
    process.nextTick(noop);
  } finally {
    hook.disable();
  }
  return exemplar;
}

function noop(): void {}
