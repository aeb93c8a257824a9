// keyward server entry point (Dockerfile, `npm start`): the same as `keyward serve`.
// The V8 flags come first: applying them re-executes the process, so nothing
// else is loaded before (serve.js is imported only afterwards).
import { applyV8Flags } from "./v8-flags.js";

applyV8Flags();
const { serve } = await import("./cli/serve.js");
await serve();
