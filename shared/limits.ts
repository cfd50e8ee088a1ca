/**
 * Every limit on what a peer or an input controls, in one place, each with
 * why it has its value (docs/operations.md, "Limits"). A peer here is anyone
 * who can reach a listener: authenticated or not, the same limits apply, so
 * that a misbehaving agent or operator with valid credentials is bounded as
 * much as a stranger. Only the limits an operator may need to size for a
 * cluster have flags (named next to them); the rest are fixed.
 *
 * The checks that go with the limits (`textIssue`, `nodeNameIssue`,
 * `preview`) are here too, so that every edge refuses the same way: an
 * Issue naming the object and the field, with at most PREVIEW_CHARS of
 * the offending value and its length, never the value itself.
 */
import type { Issue } from './errors.js';

const KiB = 1024;
const MiB = 1024 * KiB;

/** gRPC message sizes (grpc.max_receive_message_length), per listener and per client. */
export const MESSAGE_LIMITS = {
  /**
   * The controller's listener: agents' Hello/Ack/Nack (a few hundred bytes;
   * a NACK carries the agent's error text, which the agent bounds to
   * NACK_ERROR_CHARS) and weirctl's requests (names, probes: under 1 KiB).
   * 1 MiB is 1,000 times what a legitimate peer sends and bounds what one
   * message can make the controller allocate.
   */
  controllerReceiveBytes: 1 * MiB,
  /** An agent's API (Agent, FlowIntrospect): requests are a filter or a probe, under 2 KiB. */
  agentApiReceiveBytes: 64 * KiB,
  /**
   * An agent's controller stream: a whole span is one message. A span of
   * 50,000 endpoints and 5,000 policies encodes to about 40 MiB
   * (bench/propagation.ts --large-span-agents); 256 MiB leaves room for
   * six times that and still bounds a hostile controller address.
   */
  spanReceiveBytes: 256 * MiB,
  /**
   * weirctl's replies: status of every agent, a page of 10,000 flows
   * (about 6 MiB), a policy with its groups. Same bound as spans: replies
   * are as large as the cluster.
   */
  replyReceiveBytes: 256 * MiB,
  /** What a server sends: spans and replies, as above. */
  sendBytes: 256 * MiB,
} as const;

/** Lengths of the strings peers send, in characters (UTF-16 code units, as JavaScript counts). */
export const FIELD_LIMITS = {
  /** A Kubernetes node name is a DNS-1123 subdomain: at most 253. */
  nodeName: 253,
  /** An agent's instance id is a UUID (36); room for other process ids. */
  instance: 64,
  /** "host:port": a DNS name of 253, brackets of an IPv6 literal, ":" and five digits. */
  apiAddress: 261,
  /** A span hash is a base64url SHA-256 (43); the state file's hash bound. */
  hash: 128,
  /**
   * A policy name as weirctl takes it: "namespace/name" (63 + 1 + 253) or
   * a policy id with the cluster prefix; 1,024 is generous.
   */
  policyName: 1_024,
  /** An Explain/Evaluate endpoint: "namespace/pod", an IP, or a "node:" name. */
  probeTarget: 1_024,
  /** "TCP", "UDP", "SCTP". */
  protocol: 16,
  /** Any one field of a flow filter (a CIDR, a policy, a pod, a namespace). */
  flowFilterField: 1_024,
  /** A label selector as kubectl -l takes it (policy list): 256 characters, as --match and -l on flows. */
  labelSelector: 256,
  /** A page token is a flow table cursor: a decimal integer. */
  pageToken: 20,
} as const;

/**
 * The highest revision a peer may say it holds. The controller keeps its
 * counter above any revision an agent reports (SpanStore.advancePast), so
 * an unbounded one would let a single hello exhaust the counter; 2^48 is
 * nine thousand years of a commit every millisecond.
 */
export const MAX_REVISION = 2 ** 48;

/**
 * A NACK's error text as the controller keeps it (status `lastError`): an
 * agent's ValidationError lists every problem, each a line of about 100
 * characters; 2,048 shows the first twenty, the rest is in the agent's log.
 * The agent sends at most this much too.
 */
export const NACK_ERROR_CHARS = 2_048;

/** Peer-supplied text in a log line (a NACK's error, a refused value): the first this many characters. */
export const LOG_TEXT_CHARS = 256;

/** How much of a refused value an error message shows. */
export const PREVIEW_CHARS = 100;

/**
 * Log lines that a peer can cause, per peer (node, or address before a
 * hello): a burst of LOG_BURST, then LOG_PER_SECOND; beyond that lines are
 * counted, and the next line let through says how many were suppressed.
 * Across all peers at most LOG_GLOBAL_PER_SECOND (burst as many): 1,000
 * peers each at their own rate must not flood the log either. 119 MiB of
 * NACK text in 3 s is what the unbounded log did.
 */
export const LOG_LIMITS = {
  burst: 20,
  perSecond: 2,
  globalPerSecond: 200,
  /** Peers tracked at once; the least recently seen is forgotten first (it starts with a full bucket). */
  peers: 10_000,
} as const;

/** The controller's records of agents and the streams that carry them. */
export const AGENT_LIMITS = {
  /**
   * Records kept for nodes the cluster does not know (no Node, no span): an
   * agent may connect before its Node is seen, so some are legitimate;
   * beyond this many the oldest disconnected one is dropped, and when all
   * are connected a new one is refused (RESOURCE_EXHAUSTED). Flag
   * --max-unknown-agents.
   */
  unknownNodes: 1_000,
  /**
   * How long the record of an agent that went away is kept when it holds
   * nothing worth keeping (it never ACKed, or its node left the cluster):
   * long enough to span a restart or a rolling upgrade of the agent, short
   * enough that fake records do not accumulate. Flag --agent-record-ttl.
   */
  recordTtlMs: 10 * 60_000,
  /**
   * A Connect stream must say hello within this long: a stream that never
   * does holds a connection and a slot for nothing.
   */
  helloTimeoutMs: 10_000,
  /**
   * Connect streams that have not said hello yet, per client (its
   * authenticated identity, or its address) and in all. After a hello the
   * per-node bound holds (one live stream per node), so only streams
   * before hello need a per-client bound; 1,000 simulated agents on one
   * loopback address (bench/) connect fine, as they say hello at once.
   */
  pendingHelloPerClient: 64,
  pendingHelloTotal: 1_024,
} as const;

/** An agent's introspection API. */
export const INTROSPECT_LIMITS = {
  /**
   * WatchFlows streams open at once on one agent: each costs a subscription
   * (FLOW_WATCH_BUFFER events) and a filter pass per flow event; 64 is
   * more operators than watch one node. 1,000 streams took an agent from
   * 90 MB to 3.9 GB before this bound.
   */
  watchStreams: 64,
  /** ...and per client (identity, or address): a script in a loop must not take them all. */
  watchStreamsPerClient: 8,
  /**
   * Events a watcher may fall behind: a write the stream cannot take waits
   * for the stream to drain, and meanwhile events queue here; a reader this
   * far behind is not keeping up and is dropped (RESOURCE_EXHAUSTED) rather
   * than fed an ever-growing backlog. About 600 bytes an event: 2.4 MiB
   * per stream at most, 150 MiB for all 64.
   */
  watchBufferEvents: 4_096,
  /**
   * How long a watcher's stream may stay full (its reader reading nothing)
   * before the watch ends with RESOURCE_EXHAUSTED: on a quiet node the
   * queue above never overflows, and a reader that never reads would hold
   * its slot (watchStreams) until it disconnects.
   */
  watchStallMs: 30_000,
  /** A ListFlows page: at most this many flows (about 6 MiB encoded). */
  flowsPage: 10_000,
} as const;

/**
 * The controller's flow relay (ListClusterFlows, WatchClusterFlows): it
 * calls every agent's FlowIntrospect as one client (its own identity), so
 * the agents' per-client bounds apply to the controller as a whole.
 */
export const RELAY_LIMITS = {
  /**
   * Relayed watches open at once: each is one WatchFlows stream to every
   * agent, all from the controller's identity, and an agent takes at most
   * INTROSPECT_LIMITS.watchStreamsPerClient streams per client; more would
   * be refused by the agents one node at a time.
   */
  watches: INTROSPECT_LIMITS.watchStreamsPerClient,
  /** ...and per operator (identity, or address): one script must not take them all. */
  watchesPerClient: 2,
  /**
   * Events of one node a watch holds while its reader is behind; beyond it
   * the node's newest events are dropped, counted and reported in the next
   * message of that node (ClusterFlowEvent.dropped). About 600 bytes an
   * event: 600 KiB per node per watch.
   */
  nodeBufferEvents: 1_024,
  /** Flows per node in a ListClusterFlows reply: an agent's page. */
  listPerNode: INTROSPECT_LIMITS.flowsPage,
  /** Flows in one ListClusterFlows reply in all (about 30 MiB encoded). */
  listFlows: 50_000,
  /** Agents a list queries at once: a thousand nodes are not a thousand calls in flight. */
  listConcurrency: 16,
  /** ListClusterFlows calls in flight per operator and in all. */
  listsPerClient: 4,
  lists: 16,
  /** Node names in one request. */
  nodes: 1_000,
  /** How long one agent has to answer a list. */
  agentTimeoutMs: 5_000,
} as const;

/** NATS request bodies the controller reads (hello, beat, ack, nack): JSON of a few hundred bytes. */
export const NATS_LIMITS = {
  /** Bodies over this are refused before parsing (a NACK's error is bounded to NACK_ERROR_CHARS). */
  requestBytes: 64 * KiB,
} as const;

/** A value for an error message or a log line: at most PREVIEW_CHARS of it, and its length when cut. */
export function preview(value: string, max: number = PREVIEW_CHARS): string {
  if (value.length <= max) return JSON.stringify(value);
  return `${JSON.stringify(value.slice(0, max))}… (${value.length} characters)`;
}

/** Any value as JSON for a message: at most PREVIEW_CHARS of it, and its length when cut. */
export function previewJson(value: unknown): string {
  let text: string;
  try {
    text = JSON.stringify(value) ?? String(typeof value);
  } catch {
    text = `a ${typeof value}`;
  }
  return text.length <= PREVIEW_CHARS
    ? text
    : `${text.slice(0, PREVIEW_CHARS)}… (${text.length} characters)`;
}

/**
 * Problems one validation reports at most: a hostile input with a million
 * bad entries gets the first ones and a count, not a million-line error.
 */
export const MAX_ISSUES = 20;

/** Peer-supplied text cut to `max` characters, with a note of how long it was. */
export function truncate(text: string, max: number): string {
  if (text.length <= max) return text;
  return `${text.slice(0, max)}… (${text.length} characters, cut to ${max})`;
}

/** An Issue when `value` is longer than `max` (the message names the length, not the value). */
export function textIssue(
  object: string,
  field: string,
  value: string,
  max: number,
): Issue | undefined {
  if (value.length <= max) return undefined;
  return { object, field, message: `is ${value.length} characters; at most ${max}` };
}

/** A DNS-1123 subdomain: lower-case alphanumerics, "-" and ".", alphanumeric at each label's ends. */
const DNS1123_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

/** Why `name` is not a Kubernetes node name (a DNS-1123 subdomain of at most 253), or undefined. */
export function nodeNameProblem(name: string): string | undefined {
  if (name === '') return 'is required';
  if (name.length > FIELD_LIMITS.nodeName)
    return `is ${name.length} characters; a node name has at most ${FIELD_LIMITS.nodeName}`;
  if (!DNS1123_SUBDOMAIN.test(name))
    return `${preview(name)} is not a node name (a DNS-1123 subdomain: lower-case letters, digits, "-" and ".")`;
  return undefined;
}

/** nodeNameProblem as an Issue of `object`'s `field`. */
export function nodeNameIssue(object: string, field: string, name: string): Issue | undefined {
  const message = nodeNameProblem(name);
  return message === undefined ? undefined : { object, field, message };
}
