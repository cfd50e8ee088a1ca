/**
 * Label selectors: matching, a canonical form, and a text form people read.
 * Canonical selectors compare equal when they select the same way, so groups
 * built from them deduplicate across policies.
 */
import { compareStrings as cmp } from '../collections.js';
import type {
  EndpointSelector,
  LabelRequirement,
  LabelSelector,
  Labels,
  Operator,
} from './types.js';

export const EVERYTHING: LabelSelector = { requirements: [] };

export function matchesLabels(labels: Labels, selector: LabelSelector): boolean {
  for (const r of selector.requirements) {
    const has = Object.hasOwn(labels, r.key);
    switch (r.operator) {
      case 'In':
        if (!has || !r.values.includes(labels[r.key]!)) return false;
        break;
      case 'NotIn':
        if (has && r.values.includes(labels[r.key]!)) return false;
        break;
      case 'Exists':
        if (!has) return false;
        break;
      case 'DoesNotExist':
        if (has) return false;
        break;
    }
  }
  return true;
}

const OPERATOR_ORDER: Readonly<Record<Operator, number>> = {
  In: 0,
  NotIn: 1,
  Exists: 2,
  DoesNotExist: 3,
};

/** Sorts requirements and values and drops exact duplicates. */
export function canonicalSelector(requirements: readonly LabelRequirement[]): LabelSelector {
  const seen = new Set<string>();
  const out: LabelRequirement[] = [];
  for (const r of requirements) {
    const values = [...new Set(r.values)].sort();
    const c: LabelRequirement = { key: r.key, operator: r.operator, values };
    const k = requirementText(c);
    if (!seen.has(k)) {
      seen.add(k);
      out.push(c);
    }
  }
  out.sort((a, b) =>
    a.key < b.key
      ? -1
      : a.key > b.key
        ? 1
        : OPERATOR_ORDER[a.operator] - OPERATOR_ORDER[b.operator] ||
          cmp(a.values.join(','), b.values.join(',')),
  );
  return { requirements: out };
}

function requirementText(r: LabelRequirement): string {
  switch (r.operator) {
    case 'In':
      return r.values.length === 1
        ? `${r.key}=${r.values[0]}`
        : `${r.key} in (${r.values.join(',')})`;
    case 'NotIn':
      return r.values.length === 1
        ? `${r.key}!=${r.values[0]}`
        : `${r.key} notin (${r.values.join(',')})`;
    case 'Exists':
      return r.key;
    case 'DoesNotExist':
      return `!${r.key}`;
  }
}

/** kubectl's selector syntax: "app=web,tier in (a,b),!legacy"; "" selects everything. */
export function selectorText(selector: LabelSelector): string {
  return selector.requirements.map(requirementText).join(',');
}

/** A person's description: "pods {app=web} in namespace default". */
export function endpointSelectorText(s: EndpointSelector): string {
  const pods = s.pods.requirements.length === 0 ? 'all pods' : `pods {${selectorText(s.pods)}}`;
  if ('name' in s.namespace) return `${pods} in namespace ${s.namespace.name}`;
  const ns =
    s.namespace.selector.requirements.length === 0
      ? 'all namespaces'
      : `namespaces {${selectorText(s.namespace.selector)}}`;
  return `${pods} in ${ns}`;
}

/** A canonical key: equal keys select the same endpoints. */
export function endpointSelectorKey(s: EndpointSelector): string {
  const ns =
    'name' in s.namespace
      ? `ns:${s.namespace.name}`
      : `nssel:${selectorText(s.namespace.selector)}`;
  return `${ns}|pods:${selectorText(s.pods)}`;
}
