/**
 * The u32 policy and rule ids a flow entry carries, per gate, and what they
 * mean. Rule and policy ids are given by a RuleIdAllocator, one per
 * (policy, rule id) and per policy, and keep their meaning across loads for
 * as long as the datapath keeps the allocator: a flow whose verdict a load
 * did not touch keeps ids that still name its rules.
 *
 *   ruleId 0            not checked (no local endpoint on this side, or self)
 *   ruleId 1 .. n       allowed by the rule the allocator gave that id (policyId names its policy)
 *   RULE_ID_DEFAULT     not isolated: allowed by the default tier (policyId 0)
 *   RULE_ID_DENY        isolated, no rule matched (policyId 0)
 *   RULE_ID_NODE        the peer is the endpoint's own node: not subject to
 *                       NetworkPolicy, allowed (policyId 0)
 */
import type { CompiledRule } from '../../shared/policy/rule-tables.js';
import type { RuleCatalog } from '../compile/rule-catalog.js';
import { VerdictCode } from '../compile/policy-record.js';
import type { RuleRef } from '../flows/flow-table.js';
import type { GateOutcome } from './datapath.js';

export const RULE_ID_NONE = 0;
export const RULE_ID_DEFAULT = 0xffff_ffff;
export const RULE_ID_DENY = 0xffff_fffe;
export const RULE_ID_NODE = 0xffff_fffd;

const NONE: RuleRef = Object.freeze({ policyId: 0, ruleId: RULE_ID_NONE });
const DEFAULT: RuleRef = Object.freeze({ policyId: 0, ruleId: RULE_ID_DEFAULT });
const DENIED: RuleRef = Object.freeze({ policyId: 0, ruleId: RULE_ID_DENY });
const NODE: RuleRef = Object.freeze({ policyId: 0, ruleId: RULE_ID_NODE });
const OUTCOME_NONE: GateOutcome = Object.freeze({ kind: 'none' });
const OUTCOME_DEFAULT: GateOutcome = Object.freeze({ kind: 'default' });
const OUTCOME_DENY: GateOutcome = Object.freeze({ kind: 'deny' });
const OUTCOME_NODE: GateOutcome = Object.freeze({ kind: 'node' });

/**
 * Stable ids, shared by the RuleIds of successive tables: a rule keeps its
 * id (and a policy its id) for as long as the allocator lives, so that a
 * flow the datapath does not re-evaluate on a load (its endpoint's tables did
 * not change) keeps ids that still mean what they meant. Bounded: `worn`
 * says when ids of rules that left outnumber the live ones, and the caller
 * then starts a new allocator, re-evaluating every flow.
 */
export class RuleIdAllocator {
  private readonly rules = new Map<string, number>();
  private readonly outcomes: GateOutcome[] = [OUTCOME_NONE];
  private readonly policies = new Map<string, number>();

  ruleId(rule: CompiledRule): number {
    const key = `${rule.policy}\u0000${rule.id}`;
    let id = this.rules.get(key);
    if (id === undefined) {
      id = this.outcomes.length;
      this.rules.set(key, id);
      this.outcomes.push({ kind: 'rule', rule: rule.id, policy: rule.policy });
    }
    return id;
  }

  policyId(policy: string): number {
    let id = this.policies.get(policy);
    if (id === undefined) {
      id = this.policies.size + 1;
      this.policies.set(policy, id);
    }
    return id;
  }

  /** What a rule id this allocator gave means; undefined for one it did not give. */
  outcome(ruleId: number): GateOutcome | undefined {
    return ruleId > 0 ? this.outcomes[ruleId] : undefined;
  }

  /** Ids given to rules and policies that `live` (the rules of the tables in force) no longer holds outnumber those it holds. */
  worn(liveRules: number, livePolicies: number): boolean {
    return this.rules.size > 2 * liveRules + 4096 || this.policies.size > 2 * livePolicies + 4096;
  }
}

export class RuleIds {
  private readonly refs: Array<RuleRef | undefined>;

  /** The ids of the rules of `catalog`, from `allocator`: give the previous tables' allocator to keep ids stable across loads. */
  constructor(
    readonly catalog: RuleCatalog,
    readonly allocator: RuleIdAllocator = new RuleIdAllocator(),
  ) {
    this.refs = new Array(catalog.size);
  }

  /** The ref to store for a gate's verdict code (a catalog index or a VerdictCode). */
  ref(code: number): RuleRef {
    if (code === VerdictCode.ALLOW_DEFAULT) return DEFAULT;
    if (code === VerdictCode.DENY) return DENIED;
    if (code === VerdictCode.ALLOW_NODE) return NODE;
    if (code < 0) return NONE;
    let ref = this.refs[code];
    if (ref === undefined) {
      const rule = this.catalog.rule(code);
      ref =
        rule === undefined
          ? NONE
          : {
              policyId: this.allocator.policyId(rule.policy),
              ruleId: this.allocator.ruleId(rule),
            };
      this.refs[code] = ref;
    }
    return ref;
  }

  /** What a stored rule id means ('none' for an id these tables do not know). */
  outcome(ruleId: number): GateOutcome {
    if (ruleId === RULE_ID_DEFAULT) return OUTCOME_DEFAULT;
    if (ruleId === RULE_ID_DENY) return OUTCOME_DENY;
    if (ruleId === RULE_ID_NODE) return OUTCOME_NODE;
    if (ruleId === RULE_ID_NONE) return OUTCOME_NONE;
    return this.allocator.outcome(ruleId) ?? OUTCOME_NONE;
  }
}

/** Whether two gate outcomes say the same thing. */
export function sameOutcome(a: GateOutcome, b: GateOutcome): boolean {
  if (a.kind !== b.kind) return false;
  return a.kind !== 'rule' || (b.kind === 'rule' && a.rule === b.rule && a.policy === b.policy);
}
