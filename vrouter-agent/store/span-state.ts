/**
 * The agent's copy of its node's span, in wire form, at one revision.
 * Immutable: applying an update gives a new state, so that a refused update
 * leaves the previous one untouched. Persisted under the state directory
 * (atomically, checksummed, owned by the node) and loaded at start-up, so
 * that a restarted agent enforces its last span before it reaches the
 * controller; a file that is not provably this node's intact span is moved
 * aside and nothing of it is enforced.
 */
import type * as grpc from '@grpc/grpc-js';
import { ValidationError, formatIssue } from '../../shared/errors.js';
import type {
  AddressGroup__Output,
  ApplicationPolicySet__Output,
  ControllerMessage,
  ControllerMessage__Output,
  Endpoint__Output,
  FirewallPolicy__Output,
  PolicySnapshot__Output,
  ServiceGroup__Output,
  SpanUpdate__Output,
} from '../../shared/generated/weir/v1/index.js';
import { weirProto } from '../../shared/grpc/proto.js';
import { ChecksummedFile, type StateFileRejection } from '../../shared/state/checksummed-file.js';

export class SpanState {
  private constructor(
    readonly revision: number,
    readonly cluster: string,
    readonly policies: ReadonlyMap<string, FirewallPolicy__Output>,
    readonly addressGroups: ReadonlyMap<string, AddressGroup__Output>,
    readonly serviceGroups: ReadonlyMap<string, ServiceGroup__Output>,
    readonly endpoints: ReadonlyMap<string, Endpoint__Output>,
    readonly applicationPolicySet: ApplicationPolicySet__Output | null,
  ) {}

  static empty(): SpanState {
    return new SpanState(0, '', new Map(), new Map(), new Map(), new Map(), null);
  }

  /** The state after an update; throws ValidationError when it does not apply to this state. */
  apply(u: SpanUpdate__Output): SpanState {
    const revision = Number(u.revision);
    const base = Number(u.baseRevision);
    if (!Number.isSafeInteger(revision) || revision <= 0)
      throw new ValidationError([
        { object: 'SpanUpdate', field: 'revision', message: `invalid revision ${u.revision}` },
      ]);
    if (!u.snapshot && this.cluster !== '' && u.cluster !== '' && u.cluster !== this.cluster)
      throw new ValidationError([
        {
          object: 'SpanUpdate',
          field: 'cluster',
          message: `delta for cluster ${JSON.stringify(u.cluster)}, but this agent holds cluster ${JSON.stringify(this.cluster)}'s span`,
        },
      ]);
    if (!u.snapshot && base !== this.revision) {
      throw new ValidationError([
        {
          object: 'SpanUpdate',
          field: 'baseRevision',
          message: `delta from revision ${base}, but this agent holds ${this.revision}`,
        },
      ]);
    }
    const start = <T>(m: ReadonlyMap<string, T>) =>
      u.snapshot ? new Map<string, T>() : new Map(m);
    const policies = start(this.policies);
    const groups = start(this.addressGroups);
    const services = start(this.serviceGroups);
    const endpoints = start(this.endpoints);
    for (const id of u.removedPolicies) policies.delete(id);
    for (const id of u.removedAddressGroups) groups.delete(id);
    for (const id of u.removedServiceGroups) services.delete(id);
    for (const key of u.removedEndpoints) endpoints.delete(key);
    for (const p of u.policies) policies.set(p.id, p);
    for (const g of u.addressGroups) groups.set(g.id, g);
    for (const s of u.serviceGroups) services.set(s.id, s);
    for (const e of u.endpoints) endpoints.set(`${e.namespace}/${e.name}`, e);
    return new SpanState(
      revision,
      u.cluster || this.cluster,
      policies,
      groups,
      services,
      endpoints,
      u.applicationPolicySet ?? this.applicationPolicySet,
    );
  }

  toSnapshot(): PolicySnapshot__Output {
    return {
      cluster: this.cluster,
      applicationPolicySet: this.applicationPolicySet ?? {
        id: '',
        cluster: this.cluster,
        tiers: [],
      },
      policies: [...this.policies.values()],
      addressGroups: [...this.addressGroups.values()],
      serviceGroups: [...this.serviceGroups.values()],
      endpoints: [...this.endpoints.values()],
    };
  }

  /** This state as the snapshot update that rebuilds it. */
  private asSnapshotUpdate(): SpanUpdate__Output {
    const snapshot = this.toSnapshot();
    return {
      revision: String(this.revision),
      baseRevision: '0',
      snapshot: true,
      cluster: this.cluster,
      policies: snapshot.policies,
      addressGroups: snapshot.addressGroups,
      serviceGroups: snapshot.serviceGroups,
      endpoints: snapshot.endpoints,
      removedPolicies: [],
      removedAddressGroups: [],
      removedServiceGroups: [],
      removedEndpoints: [],
      applicationPolicySet: this.applicationPolicySet,
    };
  }

  // --- persistence -------------------------------------------------------------
  //
  // The state is kept as the snapshot update that rebuilds it, in its wire
  // encoding, inside a checksummed file owned by the node
  // (shared/state/checksummed-file.ts). Loading replays it through `apply`,
  // the path every update from the controller takes, so a persisted span
  // passes exactly the checks a received one does.

  /** The file in the state directory. */
  static readonly FILE = 'span.state';
  /** What agents wrote before state files had a checksum: moved aside unread. */
  static readonly LEGACY_FILE = 'span.json';

  private static file(dir: string): ChecksummedFile {
    return new ChecksummedFile(dir, SpanState.FILE, 'agent-span', { writer: 'weir-agent' });
  }

  /** Persists this state as `node`'s, atomically and durably. */
  async save(dir: string, node: string): Promise<void> {
    const body = spanCodec().encode({ update: this.asSnapshotUpdate() });
    await SpanState.file(dir).write({ node, cluster: this.cluster }, body);
  }

  /**
   * The span persisted for `node`, checked: the file intact (digest), the
   * node's own, the content a valid snapshot that `verify` (the agent:
   * compiling it) accepts. Anything else is moved aside and reported, and
   * nothing of it is used: the agent then holds no span (revision 0), so
   * its hello asks for a snapshot. Throws only for file system errors.
   */
  static async load<T>(
    dir: string,
    node: string,
    verify: (state: SpanState) => T,
  ): Promise<LoadedSpan<T>> {
    const file = SpanState.file(dir);
    const read = await file.read({ node });
    if (read.type === 'absent') {
      const legacy = await ChecksummedFile.rejectFile(
        dir,
        SpanState.LEGACY_FILE,
        'unverifiable',
        'written without a checksum by an older Weir agent',
      );
      return legacy === undefined ? { type: 'absent' } : { type: 'rejected', rejection: legacy };
    }
    if (read.type === 'rejected') return read;
    try {
      const message = spanCodec().decode(read.body);
      const u = message.update;
      if (message.kind !== 'update' || !u || !u.snapshot || u.baseRevision !== '0')
        throw new ValidationError([{ message: 'not a span snapshot' }]);
      if (u.cluster !== read.meta.owner.cluster)
        throw new ValidationError([
          {
            field: 'cluster',
            message: `${JSON.stringify(u.cluster)} differs from its owner's ${JSON.stringify(read.meta.owner.cluster)}`,
          },
        ]);
      const state = SpanState.empty().apply(u);
      return { type: 'loaded', state, verified: verify(state) };
    } catch (err) {
      const detail =
        err instanceof ValidationError
          ? err.issues.map(formatIssue).join('; ')
          : (err as Error).message;
      return { type: 'rejected', rejection: await file.reject('corrupt', `content: ${detail}`) };
    }
  }
}

/** What `SpanState.load` found. */
export type LoadedSpan<T> =
  | { readonly type: 'absent' }
  | { readonly type: 'loaded'; readonly state: SpanState; readonly verified: T }
  | { readonly type: 'rejected'; readonly rejection: StateFileRejection };

/** The wire encoding of a ControllerMessage, as the controller's stream carries it. */
function spanCodec(): {
  encode(m: ControllerMessage): Buffer;
  decode(b: Buffer): ControllerMessage__Output;
} {
  const method = (weirProto().definition['weir.v1.ControlPlane'] as grpc.ServiceDefinition)
    .Connect!;
  return {
    encode: (m) => method.responseSerialize(m),
    decode: (b) => method.responseDeserialize(b) as ControllerMessage__Output,
  };
}
