// Entry point for `npm run migrate`: the same as `keyward migrate`.
import { migrate } from "./cli/migrate.js";

process.exitCode = await migrate();
