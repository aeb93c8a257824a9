// keyward server entry point (Dockerfile, `npm start`): the same as `keyward serve`.
import { serve } from "./cli/serve.js";

await serve();
