// Child-process entry for the ceiling server, so the bench can pin it to the
// same core as keyward. Prints {"port":N} once listening; exits on SIGTERM.
import { createCeilingServer } from "./lib/ceiling-server.js";

const ceiling = createCeilingServer();
const address = await ceiling.listen("127.0.0.1", Number(process.env.CEILING_PORT ?? 0));
process.stdout.write(`${JSON.stringify({ port: address.port, pid: process.pid })}\n`);
const stop = () => void ceiling.close().then(() => process.exit(0));
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
