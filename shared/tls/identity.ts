/**
 * Weir's identities: who a certificate says its holder is. One CA issues
 * every certificate; the holder is named by exactly one URI SAN of the form
 * below (docs/security.md). A certificate with no such SAN, or with more
 * than one, names nobody and is refused.
 *
 *   spiffe://weir/node/<node>                      the agent of a node
 *   spiffe://weir/ns/<namespace>/pod/<pod>         an agent pod (cert-manager csi-driver);
 *                                                  the controller resolves it to a node
 *   spiffe://weir/controller                       the controller
 *   spiffe://weir/operator/admin/<name>            an operator (weirctl), admin
 *   spiffe://weir/operator/read-only/<name>        an operator, read-only
 */
import { X509Certificate } from 'node:crypto';

export type OperatorRole = 'admin' | 'read-only';

export type Identity =
  | { readonly kind: 'node'; readonly node: string; readonly uri: string }
  | { readonly kind: 'pod'; readonly namespace: string; readonly pod: string; readonly uri: string }
  | { readonly kind: 'controller'; readonly uri: string }
  | {
      readonly kind: 'operator';
      readonly role: OperatorRole;
      readonly name: string;
      readonly uri: string;
    };

const PREFIX = 'spiffe://weir/';
/** DNS-1123-ish names: what Kubernetes allows for nodes, namespaces, pods; at most 253. */
const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,252}$/;

export const nodeUri = (node: string): string => `${PREFIX}node/${node}`;
export const podUri = (namespace: string, pod: string): string =>
  `${PREFIX}ns/${namespace}/pod/${pod}`;
export const CONTROLLER_URI = `${PREFIX}controller`;
export const operatorUri = (role: OperatorRole, name: string): string =>
  `${PREFIX}operator/${role}/${name}`;

/** The identity a URI names, or undefined when it names none of Weir's. */
export function parseIdentityUri(uri: string): Identity | undefined {
  if (!uri.startsWith(PREFIX)) return undefined;
  const parts = uri.slice(PREFIX.length).split('/');
  const named = (s: string | undefined): s is string => s !== undefined && NAME.test(s);
  if (parts.length === 2 && parts[0] === 'node' && named(parts[1]))
    return { kind: 'node', node: parts[1], uri };
  if (
    parts.length === 4 &&
    parts[0] === 'ns' &&
    parts[2] === 'pod' &&
    named(parts[1]) &&
    named(parts[3])
  )
    return { kind: 'pod', namespace: parts[1], pod: parts[3], uri };
  if (parts.length === 1 && parts[0] === 'controller') return { kind: 'controller', uri };
  if (
    parts.length === 3 &&
    parts[0] === 'operator' &&
    (parts[1] === 'admin' || parts[1] === 'read-only') &&
    named(parts[2])
  )
    return { kind: 'operator', role: parts[1], name: parts[2], uri };
  return undefined;
}

/**
 * The URIs among a certificate's subjectAltName as Node renders it
 * ("URI:a, DNS:b"; a value holding a comma or a quote is a JSON string).
 */
export function uriSans(cert: X509Certificate): string[] {
  const san = cert.subjectAltName ?? '';
  const out: string[] = [];
  let i = 0;
  while (i < san.length) {
    const colon = san.indexOf(':', i);
    if (colon < 0) break;
    const type = san.slice(i, colon);
    let value: string;
    let next: number;
    if (san[colon + 1] === '"') {
      let j = colon + 2;
      while (j < san.length && san[j] !== '"') j += san[j] === '\\' ? 2 : 1;
      value = JSON.parse(san.slice(colon + 1, j + 1)) as string;
      next = j + 1;
    } else {
      const comma = san.indexOf(', ', colon);
      next = comma < 0 ? san.length : comma;
      value = san.slice(colon + 1, next);
    }
    if (type === 'URI') out.push(value);
    i = next + 2;
  }
  return out;
}

/**
 * The identity a certificate (DER or PEM) names: its one Weir URI SAN.
 * A string when it names none, or more than one (why, for the log).
 */
export function identityOfCertificate(cert: Buffer | X509Certificate): Identity | string {
  let x: X509Certificate;
  try {
    x = cert instanceof X509Certificate ? cert : new X509Certificate(cert);
  } catch (err) {
    return `the certificate does not parse: ${(err as Error).message}`;
  }
  const ids = uriSans(x)
    .map(parseIdentityUri)
    .filter((i): i is Identity => i !== undefined);
  if (ids.length === 0) return 'the certificate names no Weir identity (URI SAN spiffe://weir/...)';
  if (ids.length > 1)
    return `the certificate names ${ids.length} Weir identities (${ids.map((i) => i.uri).join(', ')}); it must name one`;
  return ids[0]!;
}

/** An identity as logs and errors show it. */
export function describeIdentity(id: Identity): string {
  return id.uri;
}
