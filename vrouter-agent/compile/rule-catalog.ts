/**
 * The rule catalog: a dense u32 index for every distinct CompiledRule of a
 * RuleTables, so that a verdict engine can answer "allowed by rule 1234" and
 * the caller can map it back to the rule's id and policy.
 *
 * Identity, not id: compile() shares one CompiledRule object between all the
 * endpoints a rule applies to, except ingress rules with named ports, which
 * are compiled per endpoint (the port resolves against that endpoint). Those
 * get one index per endpoint, all with the same `id`.
 *
 * Indices are dense (0 .. size-1), assigned in first-seen order walking
 * tables.endpoints in map order, egress then ingress, each the
 * NetworkPolicy rules, then the Admin, then the Baseline rules. They are
 * valid only with the catalog (and rule image) built from the same tables:
 * anything kept across recompiles (flow records, conntrack marks) keeps the
 * rule id, or the pair (catalog, index).
 */
import type { CompiledRule, RuleTables } from '../../shared/policy/rule-tables.js';

export class RuleCatalog {
  /** Rule of each index. */
  readonly rules: readonly CompiledRule[];
  private readonly indices: ReadonlyMap<CompiledRule, number>;

  private constructor(rules: readonly CompiledRule[], indices: ReadonlyMap<CompiledRule, number>) {
    this.rules = rules;
    this.indices = indices;
  }

  static of(tables: RuleTables): RuleCatalog {
    const rules: CompiledRule[] = [];
    const indices = new Map<CompiledRule, number>();
    const add = (list: readonly CompiledRule[]) => {
      for (const r of list) {
        if (!indices.has(r)) {
          indices.set(r, rules.length);
          rules.push(r);
        }
      }
    };
    for (const e of tables.endpoints.values()) {
      for (const t of [e.egress, e.ingress]) {
        add(t.rules);
        add(t.admin);
        add(t.baseline);
      }
    }
    return new RuleCatalog(rules, indices);
  }

  get size(): number {
    return this.rules.length;
  }

  /** The rule of an index; undefined for codes and out-of-range numbers. */
  rule(index: number): CompiledRule | undefined {
    return index >= 0 ? this.rules[index] : undefined;
  }

  /** The index of a rule of these tables; undefined for a rule from elsewhere. */
  indexOf(rule: CompiledRule): number | undefined {
    return this.indices.get(rule);
  }
}
