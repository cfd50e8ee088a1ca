/**
 * The agent's copy of its node's span, in wire form, at one revision.
 * Immutable: applying an update gives a new state, so that a refused update
 * leaves the previous one untouched. Persisted under the state directory
 * (atomically) and loaded at start-up, so that a restarted agent enforces its
 * last span before it reaches the controller.
 */
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ValidationError } from '../../shared/errors.js';
import type {
  AddressGroup__Output,
  ApplicationPolicySet__Output,
  Endpoint__Output,
  FirewallPolicy__Output,
  PolicySnapshot__Output,
  ServiceGroup__Output,
  SpanUpdate__Output,
} from '../../shared/generated/weir/v1/index.js';

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

  // --- persistence -------------------------------------------------------------

  static readonly FILE = 'span.json';

  async save(dir: string): Promise<void> {
    await mkdir(dir, { recursive: true });
    const tmp = join(dir, `${SpanState.FILE}.tmp`);
    await writeFile(tmp, JSON.stringify({ revision: this.revision, snapshot: this.toSnapshot() }));
    await rename(tmp, join(dir, SpanState.FILE));
  }

  /** The persisted state, or the empty state when there is none. Throws when the file is unreadable. */
  static async load(dir: string): Promise<SpanState> {
    let text: string;
    try {
      text = await readFile(join(dir, SpanState.FILE), 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return SpanState.empty();
      throw err;
    }
    const { revision, snapshot } = JSON.parse(text) as {
      revision: number;
      snapshot: PolicySnapshot__Output;
    };
    return SpanState.empty().apply({
      revision: String(revision),
      baseRevision: '0',
      snapshot: true,
      cluster: snapshot.cluster,
      policies: snapshot.policies,
      addressGroups: snapshot.addressGroups,
      serviceGroups: snapshot.serviceGroups,
      endpoints: snapshot.endpoints,
      removedPolicies: [],
      removedAddressGroups: [],
      removedServiceGroups: [],
      removedEndpoints: [],
      applicationPolicySet: snapshot.applicationPolicySet,
    });
  }
}
