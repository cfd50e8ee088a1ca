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

/**
 * Kubernetes' label selector text (`kubectl -l`): requirements separated by
 * commas, each `key=value`, `key==value`, `key!=value`, `key in (a,b)`,
 * `key notin (a,b)`, `key` (exists) or `!key` (does not exist). A message
 * naming the requirement when the text is not a selector.
 */
export function parseSelectorText(text: string): LabelSelector | string {
  const parts: string[] = [];
  let depth = 0;
  let cur = '';
  for (const ch of text) {
    if (ch === '(') depth++;
    else if (ch === ')') depth--;
    if (depth < 0) return `unbalanced ")" in ${JSON.stringify(text)}`;
    if (ch === ',' && depth === 0) {
      parts.push(cur);
      cur = '';
    } else cur += ch;
  }
  if (depth !== 0) return `unbalanced "(" in ${JSON.stringify(text)}`;
  parts.push(cur);
  const key = /^(?:[a-z0-9]([-a-z0-9.]*[a-z0-9])?\/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$/;
  const value = /^(?:[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$/;
  const requirements: LabelRequirement[] = [];
  for (const raw of parts) {
    const p = raw.trim();
    if (p === '') {
      if (parts.length === 1) break; // the empty selector: everything
      return `empty requirement in ${JSON.stringify(text)}`;
    }
    const eq = /^(\S+?)\s*(==|!=|=)\s*(\S*)$/.exec(p);
    const set = /^(\S+)\s+(in|notin)\s*\(([^)]*)\)$/.exec(p);
    const not = /^!\s*(\S+)$/.exec(p);
    let r: LabelRequirement;
    if (eq) r = { key: eq[1]!, operator: eq[2] === '!=' ? 'NotIn' : 'In', values: [eq[3]!] };
    else if (set)
      r = {
        key: set[1]!,
        operator: set[2] === 'in' ? 'In' : 'NotIn',
        values: set[3]!.split(',').map((v) => v.trim()),
      };
    else if (not) r = { key: not[1]!, operator: 'DoesNotExist', values: [] };
    else if (key.test(p)) r = { key: p, operator: 'Exists', values: [] };
    else
      return `${JSON.stringify(p)} is not a requirement (key=value, key!=value, key in (a,b), key notin (a,b), key, !key)`;
    if (!key.test(r.key)) return `${JSON.stringify(r.key)} is not a label key`;
    const bad = r.values.find((v) => !value.test(v) || v.length > 63);
    if (bad !== undefined) return `${JSON.stringify(bad)} is not a label value`;
    requirements.push(r);
  }
  return canonicalSelector(requirements);
}
