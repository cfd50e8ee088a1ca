/**
 * The publisher seam: how agent connections reach the Distributor, whatever
 * carries them. A publisher (grpc-publisher.ts: ControlPlane streams;
 * nats-publisher.ts: NATS subjects and JetStream) turns each agent
 * connection into one `hello()` with an AgentLink, and that agent's
 * answers into calls on the session it gets back:
 *
 *   agent hello ─> sessions.hello(h, link) ─> session
 *   link.send(update, key) ─> the agent          (one in flight per node)
 *   agent ack/nack ─> session.ack / session.nack
 *   connection lost ─> session.close()           (link.close(): the
 *                                                 Distributor ends it)
 *
 * The Distributor behind it is fed only by the span store, so a publisher
 * never reads the cluster model: what it sends is what the store computed.
 */
import type { AgentHello, AgentLink, AgentSession } from './distributor.js';

export type { AgentHello, AgentLink, AgentSession };

/** What publishers hand agent connections to (the Distributor). */
export interface SessionHost {
  /** The current revision (what a welcome reports). */
  readonly revision: number;
  /**
   * Makes room for a hello from `node` or throws ResourceExhaustedError
   * (records of nodes the cluster does not know are bounded); hello() does
   * the same, so a publisher that must answer before hello() asks first.
   */
  admit(node: string): void;
  hello(h: AgentHello, link: AgentLink): AgentSession;
}
