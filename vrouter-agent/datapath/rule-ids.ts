/**
 * The u32 policy and rule ids a flow entry carries, per gate, and what they
 * mean. Rule ids are RuleCatalog indices + 1; policy ids are positions in
 * `tables.policies` + 1. Both are valid only with the tables they were made
 * from: the datapath rewrites every flow's ids when it loads new tables.
 *
 *   ruleId 0            not checked (no local endpoint on this side, or self)
 *   ruleId 1 .. n       allowed by catalog rule ruleId - 1 (policyId names its policy)
 *   RULE_ID_DEFAULT     not isolated: allowed by the default tier (policyId 0)
 *   RULE_ID_DENY        isolated, no rule matched (policyId 0)
 *   RULE_ID_NODE        the peer is the endpoint's own node: not subject to
 *                       NetworkPolicy, allowed (policyId 0)
 */
import type { RuleTables } from '../../shared/policy/rule-tables.js';
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

export class RuleIds {
  private readonly refs: Array<RuleRef | undefined>;
  private readonly outcomes: Array<GateOutcome | undefined>;
  private readonly policyIds: ReadonlyMap<string, number>;

  constructor(
    readonly catalog: RuleCatalog,
    tables: RuleTables,
  ) {
    this.policyIds = new Map([...tables.policies.keys()].map((id, i) => [id, i + 1]));
    this.refs = new Array(catalog.size);
    this.outcomes = new Array(catalog.size);
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
      ref = {
        policyId: rule === undefined ? 0 : (this.policyIds.get(rule.policy) ?? 0),
        ruleId: code + 1,
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
    const index = ruleId - 1;
    let o = this.outcomes[index];
    if (o === undefined) {
      const rule = this.catalog.rule(index);
      if (rule === undefined) return OUTCOME_NONE;
      o = { kind: 'rule', rule: rule.id, policy: rule.policy };
      this.outcomes[index] = o;
    }
    return o;
  }
}

/** Whether two gate outcomes say the same thing. */
export function sameOutcome(a: GateOutcome, b: GateOutcome): boolean {
  if (a.kind !== b.kind) return false;
  return a.kind !== 'rule' || (b.kind === 'rule' && a.rule === b.rule && a.policy === b.policy);
}
