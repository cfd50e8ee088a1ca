/**
 * Verdict engines: what the datapath asks for first-packet verdicts, a batch
 * at a time. Two implementations of one interface:
 *
 *   RuleTables ─┬─ encodeRuleImage ─> native RuleEvaluator (rule_eval.cc)   'native'
 *               └──────────────────> RuleTables.egress/ingress, per packet  'typescript'
 *
 * The TypeScript engine is the policy core's own evaluator (the reference)
 * behind the batch interface; the native one decides the same from the
 * flattened image and is tested against it (test/compile/). Which one
 * createVerdictEngine() gives is decided by the addon loader
 * (native/loader.ts: WEIR_NATIVE=0 forces TypeScript, =1 requires native) and
 * by the options, and is reported in `status`.
 *
 * An engine is immutable: a new policy revision means new RuleTables and a
 * new engine (swap the reference, then dispose the old one).
 */
import { InternalError, UnavailableError } from '../../shared/errors.js';
import {
  ALLOW_DEFAULT,
  ALLOW_NODE,
  DENY,
  type DirectionResult,
  type RuleTables,
} from '../../shared/policy/rule-tables.js';
import { nativeAddon, nativeStatus } from '../native/loader.js';
import {
  POLICY_RECORD_BYTES,
  PolicyRecordField,
  RESULT_STRIDE,
  VERDICT_ALLOWED,
  VERDICT_SELF,
  VerdictCode,
  readAddress,
} from './policy-record.js';
import { RuleCatalog } from './rule-catalog.js';
import { RULE_IMAGE_VERSION, encodeRuleImage } from './rule-image.js';

export type VerdictImplementation = 'native' | 'typescript';

export interface VerdictEngineStatus {
  readonly implementation: VerdictImplementation;
  /** Why this one: "native addon loaded from …", "disabled by WEIR_NATIVE=0", "requested", a load error. */
  readonly reason: string;
}

/**
 * What decides first packets from RuleTables, a batch at a time: the
 * datapath's policy seam (datapath/userspace-datapath.ts `verdictEngine`).
 */
export interface VerdictEngine extends Disposable {
  readonly implementation: VerdictImplementation;
  readonly status: VerdictEngineStatus;
  /** The tables this engine decides from (and that explain reads). */
  readonly tables: RuleTables;
  /** Rule index ↔ CompiledRule for the indices evaluate() writes. */
  readonly catalog: RuleCatalog;
  /**
   * Decides policy records [0, count) of `packets` (POLICY_RECORD_BYTES
   * each, layout in policy-record.ts) into out[3i .. 3i+2] (egress code,
   * ingress code, flags); returns how many were allowed. Throws, writing
   * nothing, when count is not an integer in [0, 2^31), `packets` is shorter
   * than count records or `out` shorter than count results; and after
   * dispose. `packets` and `out` must not overlap.
   */
  evaluate(packets: Uint8Array, count: number, out: Int32Array): number;
  /** Sizes, for stats and benchmarks: rules, endpoints, image bytes, indexed tables, ... */
  info(): Readonly<Record<string, number | boolean | string>>;
  /** Frees native memory now; idempotent. */
  [Symbol.dispose](): void;
}

/** Makes the engine for a tables load (the datapath calls it once per load). */
export type VerdictEngineFactory = (tables: RuleTables) => VerdictEngine;

export interface VerdictEngineOptions {
  /** 'auto' (default): native when the addon loads, else TypeScript. 'native': native or throw. */
  readonly implementation?: 'auto' | VerdictImplementation;
  /** Native only: tables with at least this many rules get a peer-address index (default 32; 0: all; 2^32-1: none). */
  readonly indexMinRules?: number;
  /** Native only: inside an index, candidate lists of at least this many rules get a port index (default 16). */
  readonly portIndexMinRules?: number;
}

/** The addon's evaluator class (native/src/rule_eval.cc). */
interface NativeRuleEvaluator {
  evaluate(packets: Uint8Array, count: number, out: Int32Array): number;
  info(): Record<string, number | boolean>;
  dispose(): void;
}
export interface NativeRuleEvaluatorClass {
  new (
    image: ArrayBuffer | ArrayBufferView,
    options?: { indexMinRules?: number; portIndexMinRules?: number },
  ): NativeRuleEvaluator;
  readonly imageVersion: number;
}

/** The native evaluator class, or why there is none. */
export function nativeRuleEvaluator(): {
  readonly evaluator: NativeRuleEvaluatorClass | undefined;
  readonly reason: string;
} {
  const addon = nativeAddon();
  const status = nativeStatus();
  if (addon === undefined) return { evaluator: undefined, reason: status.reason };
  const ctor = addon.RuleEvaluator as NativeRuleEvaluatorClass | undefined;
  if (typeof ctor !== 'function')
    return {
      evaluator: undefined,
      reason: `native addon has no RuleEvaluator (a stale build? run npm run build:native); ${status.reason}`,
    };
  if (ctor.imageVersion !== RULE_IMAGE_VERSION) {
    return {
      evaluator: undefined,
      reason: `native RuleEvaluator reads image version ${ctor.imageVersion}, this code writes ${RULE_IMAGE_VERSION} (a stale build?)`,
    };
  }
  return { evaluator: ctor, reason: `native RuleEvaluator: ${status.reason}` };
}

/** What createVerdictEngine(tables) would give with default options. */
export function verdictEngineStatus(): VerdictEngineStatus {
  const n = nativeRuleEvaluator();
  return { implementation: n.evaluator ? 'native' : 'typescript', reason: n.reason };
}

export function createVerdictEngine(
  tables: RuleTables,
  options: VerdictEngineOptions = {},
): VerdictEngine {
  const want = options.implementation ?? 'auto';
  if (want === 'typescript')
    return new TypeScriptVerdictEngine(tables, RuleCatalog.of(tables), {
      implementation: 'typescript',
      reason: 'requested',
    });
  const n = nativeRuleEvaluator();
  if (n.evaluator === undefined) {
    if (want === 'native')
      throw new UnavailableError(`native verdict engine unavailable: ${n.reason}`);
    return new TypeScriptVerdictEngine(tables, RuleCatalog.of(tables), {
      implementation: 'typescript',
      reason: n.reason,
    });
  }
  const { image, catalog } = encodeRuleImage(tables);
  let evaluator: NativeRuleEvaluator;
  try {
    const tuning = {
      ...(options.indexMinRules === undefined ? {} : { indexMinRules: options.indexMinRules }),
      ...(options.portIndexMinRules === undefined
        ? {}
        : { portIndexMinRules: options.portIndexMinRules }),
    };
    evaluator = new n.evaluator(image, tuning);
  } catch (err) {
    throw new InternalError('the native evaluator rejected an image encoded from rule tables', {
      cause: err,
    });
  }
  return new NativeVerdictEngine(tables, catalog, evaluator, image.byteLength, {
    implementation: 'native',
    reason: n.reason,
  });
}

/** A code from out[] as the reference evaluator's DirectionResult; undefined for NOT_LOCAL and INVALID. */
/** Whether a direction's verdict code denies: DENY, or the index of a deny rule (ClusterNetworkPolicy Deny). */
export function codeDenies(code: number, catalog: RuleCatalog): boolean {
  return code === VerdictCode.DENY || (code >= 0 && catalog.rule(code)?.action === 'deny');
}

export function directionResultOf(code: number, catalog: RuleCatalog): DirectionResult | undefined {
  if (code === VerdictCode.ALLOW_DEFAULT) return ALLOW_DEFAULT;
  if (code === VerdictCode.ALLOW_NODE) return ALLOW_NODE;
  if (code === VerdictCode.DENY) return DENY;
  return catalog.rule(code);
}

class NativeVerdictEngine implements VerdictEngine {
  readonly implementation = 'native';

  constructor(
    readonly tables: RuleTables,
    readonly catalog: RuleCatalog,
    private readonly evaluator: NativeRuleEvaluator,
    private readonly imageBytes: number,
    readonly status: VerdictEngineStatus,
  ) {}

  evaluate(packets: Uint8Array, count: number, out: Int32Array): number {
    return this.evaluator.evaluate(packets, count, out);
  }

  info(): Readonly<Record<string, number | boolean | string>> {
    return {
      implementation: 'native',
      catalogRules: this.catalog.size,
      imageBytes: this.imageBytes,
      ...this.evaluator.info(),
    };
  }

  [Symbol.dispose](): void {
    this.evaluator.dispose();
  }
}

class TypeScriptVerdictEngine implements VerdictEngine {
  readonly implementation = 'typescript';
  private disposed = false;

  constructor(
    readonly tables: RuleTables,
    readonly catalog: RuleCatalog,
    readonly status: VerdictEngineStatus,
  ) {}

  evaluate(packets: Uint8Array, count: number, out: Int32Array): number {
    if (this.disposed) throw new InternalError('verdict engine: disposed');
    if (!(packets instanceof Uint8Array))
      throw new TypeError('evaluate(packets, count, out): packets must be a Uint8Array');
    if (!Number.isInteger(count) || count < 0 || count > 0x7fff_ffff)
      throw new TypeError('evaluate(packets, count, out): count must be an integer in [0, 2^31)');
    if (!(out instanceof Int32Array))
      throw new TypeError('evaluate(packets, count, out): out must be an Int32Array');
    if (packets.byteLength < count * POLICY_RECORD_BYTES)
      throw new RangeError(
        `evaluate: packets holds ${packets.byteLength} bytes, ${count} records need ${count * POLICY_RECORD_BYTES}`,
      );
    if (out.length < count * RESULT_STRIDE)
      throw new RangeError(
        `evaluate: out holds ${out.length} Int32 values, ${count} results need ${count * RESULT_STRIDE}`,
      );
    const view = new DataView(packets.buffer, packets.byteOffset, packets.byteLength);
    const tables = this.tables;
    const byIp = tables.byIp;
    let allowed = 0;
    for (let i = 0; i < count; i++) {
      const o = i * RESULT_STRIDE;
      const at = i * POLICY_RECORD_BYTES;
      const src = readAddress(
        view,
        at + PolicyRecordField.src,
        packets[at + PolicyRecordField.srcFamily]!,
      );
      const dst = readAddress(
        view,
        at + PolicyRecordField.dst,
        packets[at + PolicyRecordField.dstFamily]!,
      );
      if (src === undefined || dst === undefined) {
        out[o] = VerdictCode.INVALID;
        out[o + 1] = VerdictCode.INVALID;
        out[o + 2] = 0;
        continue;
      }
      const from = byIp.get(src);
      const to = byIp.get(dst);
      if (from !== undefined && from === to) {
        out[o] = VerdictCode.NOT_LOCAL;
        out[o + 1] = VerdictCode.NOT_LOCAL;
        out[o + 2] = VERDICT_ALLOWED | VERDICT_SELF;
        allowed++;
        continue;
      }
      const protocol = packets[at + PolicyRecordField.protocol]!;
      const port =
        packets[at + PolicyRecordField.dstPort]! |
        (packets[at + PolicyRecordField.dstPort + 1]! << 8);
      const eg =
        from === undefined
          ? VerdictCode.NOT_LOCAL
          : this.code(tables.egress(from, dst, protocol, port));
      const ing =
        to === undefined
          ? VerdictCode.NOT_LOCAL
          : this.code(tables.ingress(to, src, protocol, port, dst));
      const ok = !this.denies(eg) && !this.denies(ing);
      out[o] = eg;
      out[o + 1] = ing;
      out[o + 2] = ok ? VERDICT_ALLOWED : 0;
      if (ok) allowed++;
    }
    return allowed;
  }

  private denies(code: number): boolean {
    return codeDenies(code, this.catalog);
  }

  private code(r: DirectionResult): number {
    if (r === ALLOW_DEFAULT) return VerdictCode.ALLOW_DEFAULT;
    if (r === ALLOW_NODE) return VerdictCode.ALLOW_NODE;
    if (r === DENY) return VerdictCode.DENY;
    const i = this.catalog.indexOf(r);
    if (i === undefined)
      throw new InternalError(`rule ${r.id} decided a packet but is not in the catalog`);
    return i;
  }

  info(): Readonly<Record<string, number | boolean | string>> {
    return {
      implementation: 'typescript',
      catalogRules: this.catalog.size,
      endpoints: this.tables.endpoints.size,
      disposed: this.disposed,
    };
  }

  [Symbol.dispose](): void {
    this.disposed = true;
  }
}
