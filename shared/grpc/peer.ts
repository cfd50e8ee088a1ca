/**
 * Who a gRPC call comes from, for per-client limits: the identity of its
 * client certificate when the connection is authenticated (the URI SAN,
 * TLS-CONVENTIONS.md), else its remote address without the port. So a
 * limit per client holds per identity under mTLS, and per host without it.
 */
import { ResourceExhaustedError } from '../errors.js';

type Call = { getPeer(): string } & {
  getAuthContext?: () => { sslPeerCertificate?: { subjectaltname?: string } } | undefined;
};

/** The client of `call`: "spiffe://..." when authenticated, else its address ("127.0.0.1", "::1"). */
export function clientOf(call: Call): string {
  const san = call.getAuthContext?.()?.sslPeerCertificate?.subjectaltname;
  const uri = san
    ?.split(',')
    .map((s) => s.trim())
    .find((s) => s.startsWith('URI:'));
  if (uri !== undefined) return uri.slice(4);
  const peer = call.getPeer();
  // "ipv4:1.2.3.4:5", "ipv6:[::1]:5", "1.2.3.4:5", "[::1]:5"
  const bare = peer.replace(/^ipv[46]:/, '');
  const m = /^\[([^\]]*)\]:\d+$/.exec(bare) ?? /^([^:]*):\d+$/.exec(bare);
  return m?.[1] ?? bare;
}

/**
 * Counts what each client holds open (streams), against a per-client and a
 * total limit. `acquire` throws ResourceExhaustedError (RESOURCE_EXHAUSTED
 * at the edge) naming the limit; the release it returns is idempotent.
 */
export class PeerSlots {
  private readonly held = new Map<string, number>();
  private total = 0;

  constructor(
    /** What is counted, for the message: "WatchFlows streams". */
    private readonly what: string,
    private readonly perClient: number,
    private readonly limit: number,
  ) {}

  get open(): number {
    return this.total;
  }

  acquire(client: string): () => void {
    const n = this.held.get(client) ?? 0;
    if (n >= this.perClient)
      throw new ResourceExhaustedError(
        `this client has ${n} ${this.what} open, the most one client may (${this.perClient}); close one first`,
      );
    if (this.total >= this.limit)
      throw new ResourceExhaustedError(
        `${this.total} ${this.what} are open, the most this server allows (${this.limit}); try again later`,
      );
    this.held.set(client, n + 1);
    this.total++;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.total--;
      const left = (this.held.get(client) ?? 1) - 1;
      if (left <= 0) this.held.delete(client);
      else this.held.set(client, left);
    };
  }
}
