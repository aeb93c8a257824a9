// Child-process entry for keyward's transport with an empty method (see
// lib/transport-server.ts), pinned like keyward and run with keyward's V8
// flags. Prints {"port":N} once listening; exits on SIGTERM.
import { createTransportServer } from "./lib/transport-server.js";

const server = createTransportServer();
const address = await server.listen("127.0.0.1", 0);
process.stdout.write(`${JSON.stringify({ port: address.port, pid: process.pid })}\n`);
const stop = () => void server.close().then(() => process.exit(0));
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
