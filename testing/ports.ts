/** Loopback ports for tests and benchmarks that start servers. */
import { createServer } from 'node:net';

/** A port free right now on 127.0.0.1 (another process may take it before it is used). */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
    s.on('error', reject);
  });
}
