/**
 * A keep-alive node:http client for load tests: cheaper per request than fetch, so the
 * server, not the client, is what gets loaded.
 */
import { Agent, request } from 'node:http';

export interface KeepAliveClient {
  /** GET `url`; resolves with the status and the body text. */
  get(url: string): Promise<{ status: number; body: string }>;
  close(): void;
}

export function keepAliveClient(maxSockets: number): KeepAliveClient {
  const agent = new Agent({ keepAlive: true, maxSockets });
  return {
    get: (url) =>
      new Promise((resolve, reject) => {
        const r = request(url, { agent }, (res) => {
          let body = '';
          res.setEncoding('utf8');
          res.on('data', (c: string) => {
            body += c;
          });
          res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
          res.on('error', reject);
        });
        r.on('error', reject);
        r.end();
      }),
    close: () => agent.destroy(),
  };
}
