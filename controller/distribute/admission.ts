/**
 * What an agent may say, checked the same way whatever carries it (gRPC
 * stream, NATS request): every field of a hello, ack and nack against the
 * limits of shared/limits.ts, every problem named (object and field, never
 * an echo of the value), and the rule for a second stream from the same
 * node. The publishers call these before anything reaches the Distributor;
 * the Distributor's own bounds (records of unknown nodes, their lifetime)
 * are in distributor.ts, with their values in shared/limits.ts.
 *
 * These limits apply whether or not the peer is authenticated: an
 * authenticated agent that misbehaves is bounded as much as a stranger.
 */
import type { Issue } from '../../shared/errors.js';
import {
  FIELD_LIMITS,
  MAX_REVISION,
  nodeNameIssue,
  preview,
  textIssue,
} from '../../shared/limits.js';

/** What an agent says when it connects. */
export interface AgentHello {
  readonly node: string;
  /** One agent process. */
  readonly instance: string;
  /** The revision of the span it enforces; 0: none. */
  readonly revision: number;
  /** The content hash of the span it enforces; '': not reported (never in sync). */
  readonly inForceHash: string;
  readonly apiAddress: string;
}

/** A hello as it came off the wire: strings, and the revision as a string or number. */
export interface RawHello {
  readonly node: unknown;
  readonly appliedRevision: unknown;
  readonly instance: unknown;
  readonly apiAddress: unknown;
  readonly inForceHash: unknown;
}

const HASH = /^[A-Za-z0-9_-]*$/;
/** "host:port", host a name, an IPv4 address or a bracketed IPv6 one. */
/**
 * host:port, or a Unix socket by absolute path (an agent in a network
 * namespace of its own, as `weirctl lab` runs them, shares the filesystem
 * with the controller, not an address). Either way the controller dials it
 * with mutual TLS and accepts only the certificate of the agent's node.
 */
const ADDRESS = /^((\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):\d{1,5}|unix:\/[A-Za-z0-9._/-]{1,200})$/;

function str(
  issues: Issue[],
  object: string,
  field: string,
  v: unknown,
  max: number,
): string | undefined {
  if (v === undefined || v === null) return '';
  if (typeof v !== 'string') {
    issues.push({ object, field, message: `is a ${typeof v}, not a string` });
    return undefined;
  }
  const issue = textIssue(object, field, v, max);
  if (issue !== undefined) {
    issues.push(issue);
    return undefined;
  }
  return v;
}

function revisionOf(issues: Issue[], object: string, field: string, v: unknown): number {
  const n = typeof v === 'string' && /^\d{1,20}$/.test(v) ? Number(v) : v;
  if (typeof n !== 'number' || !Number.isSafeInteger(n) || n < 0 || n > MAX_REVISION) {
    issues.push({
      object,
      field,
      message: `${typeof v === 'string' ? preview(v, 24) : typeof v === 'number' ? v : `a ${typeof v}`} is not a revision (an integer from 0 to 2^48)`,
    });
    return 0;
  }
  return n;
}

function hashOf(issues: Issue[], object: string, v: unknown): string {
  const h = str(issues, object, 'inForceHash', v, FIELD_LIMITS.hash);
  if (h !== undefined && !HASH.test(h)) {
    issues.push({ object, field: 'inForceHash', message: `${preview(h)} is not a span hash` });
    return '';
  }
  return h ?? '';
}

/** The hello, or every problem with it. */
export function checkHello(raw: RawHello): AgentHello | Issue[] {
  const issues: Issue[] = [];
  const o = 'Hello';
  const node = str(issues, o, 'node', raw.node, Number.POSITIVE_INFINITY);
  if (node !== undefined) {
    const issue = nodeNameIssue(o, 'node', node);
    if (issue !== undefined) issues.push(issue);
  }
  const revision = revisionOf(issues, o, 'appliedRevision', raw.appliedRevision);
  const instance = str(issues, o, 'instance', raw.instance, FIELD_LIMITS.instance);
  const apiAddress = str(issues, o, 'apiAddress', raw.apiAddress, FIELD_LIMITS.apiAddress);
  if (apiAddress !== undefined && apiAddress !== '' && !ADDRESS.test(apiAddress))
    issues.push({
      object: o,
      field: 'apiAddress',
      message: `${preview(apiAddress)} is not host:port or unix:/PATH`,
    });
  const inForceHash = hashOf(issues, o, raw.inForceHash);
  if (issues.length > 0) return issues;
  return {
    node: node!,
    revision,
    instance: instance!,
    apiAddress: apiAddress!,
    inForceHash,
  };
}

/** An ACK's fields, or its problems. */
export function checkAck(raw: {
  revision: unknown;
  inForceHash: unknown;
}): { revision: number; inForceHash: string } | Issue[] {
  const issues: Issue[] = [];
  const revision = revisionOf(issues, 'Ack', 'revision', raw.revision);
  const inForceHash = hashOf(issues, 'Ack', raw.inForceHash);
  return issues.length > 0 ? issues : { revision, inForceHash };
}

/** A NACK's fields, or its problems (the error text is the agent's, any length within the message bound). */
export function checkNack(raw: {
  revision: unknown;
  error: unknown;
  inForceHash: unknown;
}): { revision: number; error: string; inForceHash: string } | Issue[] {
  const issues: Issue[] = [];
  const revision = revisionOf(issues, 'Nack', 'revision', raw.revision);
  const inForceHash = hashOf(issues, 'Nack', raw.inForceHash);
  // Cut to NACK_ERROR_CHARS where it is kept (Distributor): too long is not wrong.
  const error = typeof raw.error === 'string' ? raw.error : '';
  return issues.length > 0 ? issues : { revision, error, inForceHash };
}

/**
 * A hello for a node whose agent is connected on another stream: one live
 * stream per node. Without authentication there is no telling the real
 * agent from another, and the newer stream is the one that works (the
 * older is often a half-open connection not yet noticed), so the new one
 * replaces the old. Under mTLS only the node's own certificate can say
 * hello for it, so the same rule holds; the mtls branch refines it here,
 * and only here, if it needs to.
 */
export function secondStream(_existing: { instance: string }, _incoming: AgentHello): 'replace' {
  return 'replace';
}
