/**
 * What every kind Weir reads shares: the field reader that collects every
 * problem with its field path (metadata, labels, selectors, addresses,
 * protocols, primitive types), and apimachinery's name rules.
 */
import type { Issue } from '../../shared/errors.js';
import { parseCidr } from '../../shared/net/ip.js';
import { canonicalSelector } from '../../shared/policy/selector.js';
import {
  PROTOCOLS,
  type LabelRequirement,
  type LabelSelector,
  type Labels,
  type Operator,
  type Protocol,
} from '../../shared/policy/types.js';

// ---------------------------------------------------------------------------
// Name rules, as apimachinery's validation defines them.

const DNS1123_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const DNS1123_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const QUALIFIED_NAME = /^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$/;

/** IANA_SVC_NAME: 1-15 of [a-z0-9-], at least one letter, no leading, trailing or double hyphen. */
export function portNameProblem(name: string): string | undefined {
  if (name.length > 15) return 'is not a valid port name: must be no more than 15 characters';
  if (!/^[-a-z0-9]+$/.test(name))
    return 'is not a valid port name: must contain only lower-case letters, digits and "-"';
  if (!/[a-z]/.test(name))
    return 'is not a valid port name: must contain at least one letter (numbers go in as numbers, without quotes)';
  if (name.startsWith('-') || name.endsWith('-') || name.includes('--'))
    return 'is not a valid port name: "-" may not start or end it, or appear twice in a row';
  return undefined;
}

function labelKeyProblem(key: string): string | undefined {
  const slash = key.lastIndexOf('/');
  const prefix = slash >= 0 ? key.slice(0, slash) : undefined;
  const name = slash >= 0 ? key.slice(slash + 1) : key;
  if (
    prefix !== undefined &&
    (prefix.length === 0 || prefix.length > 253 || !DNS1123_SUBDOMAIN.test(prefix))
  ) {
    return 'prefix must be a DNS subdomain (lower-case letters, digits, "-" and ".")';
  }
  if (name.length === 0 || name.length > 63 || !QUALIFIED_NAME.test(name)) {
    return 'name part must be 1-63 characters: letters, digits, "-", "_" or ".", starting and ending with a letter or digit';
  }
  return undefined;
}

function labelValueProblem(value: string): string | undefined {
  if (value === '') return undefined;
  if (value.length > 63 || !QUALIFIED_NAME.test(value)) {
    return 'must be at most 63 characters: letters, digits, "-", "_" or ".", starting and ending with a letter or digit';
  }
  return undefined;
}

// ---------------------------------------------------------------------------

export function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

export function describe(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'a list';
  return typeof v === 'object' ? 'an object' : `${typeof v} ${JSON.stringify(v)}`;
}

/** Reads fields of one object, collecting every problem with its field path. */
export class Reader {
  readonly issues: Issue[] = [];
  private object: string | undefined;

  constructor(private readonly source: string | undefined) {}

  issue(field: string, message: string): void {
    this.issues.push({ source: this.source, object: this.object, field, message });
  }

  metadata(raw: Record<string, unknown>, kind: string, namespaced: boolean) {
    const meta = this.record(raw.metadata, 'metadata') ?? {};
    const name = this.string(meta.name, 'metadata.name') ?? '';
    const namespace = namespaced
      ? this.string(meta.namespace, 'metadata.namespace') || 'default'
      : '';
    this.object = `${kind} ${namespaced ? `${namespace}/` : ''}${name || '(no name)'}`;
    if (name === '') this.issue('metadata.name', 'required');
    else if (
      kind === 'Namespace'
        ? name.length > 63 || !DNS1123_LABEL.test(name)
        : name.length > 253 || !DNS1123_SUBDOMAIN.test(name)
    ) {
      this.issue(
        'metadata.name',
        `${JSON.stringify(name)} is not a valid name: lower-case letters, digits and "-"${kind === 'Namespace' ? '' : ' (and ".")'}`,
      );
    }
    if (namespaced && (namespace.length > 63 || !DNS1123_LABEL.test(namespace))) {
      this.issue(
        'metadata.namespace',
        `${JSON.stringify(namespace)} is not a valid namespace name`,
      );
    }
    const uid = this.string(meta.uid, 'metadata.uid') ?? '';
    const labels = this.labels(meta.labels, 'metadata.labels');
    if (this.issues.length > 0 && name === '') return undefined;
    return { name, namespace, uid, labels };
  }

  labels(v: unknown, field: string): Labels {
    if (v === undefined || v === null) return {};
    const rec = this.record(v, field);
    if (rec === undefined) return {};
    const out: Record<string, string> = {};
    for (const [k, value] of Object.entries(rec)) {
      const f = `${field}[${JSON.stringify(k)}]`;
      const keyBad = labelKeyProblem(k);
      if (keyBad !== undefined) {
        this.issue(f, `label key ${JSON.stringify(k)}: ${keyBad}`);
        continue;
      }
      if (typeof value !== 'string') {
        this.issue(f, `label value must be a string, not ${describe(value)} (quote it in YAML)`);
        continue;
      }
      const valueBad = labelValueProblem(value);
      if (valueBad !== undefined) this.issue(f, `label value ${JSON.stringify(value)} ${valueBad}`);
      else out[k] = value;
    }
    return out;
  }

  selector(v: unknown, field: string): LabelSelector | undefined {
    if (v === null) return { requirements: [] };
    const rec = this.record(v, field);
    if (rec === undefined) return undefined;
    const before = this.issues.length;
    const requirements: LabelRequirement[] = [];
    for (const [key, value] of Object.entries(
      this.labels(rec.matchLabels, `${field}.matchLabels`),
    )) {
      requirements.push({ key, operator: 'In', values: [value] });
    }
    // biome-ignore lint/suspicious/useIterableCallbackReturn: `return this.issue(...)` ends one element's checks
    (this.array(rec.matchExpressions, `${field}.matchExpressions`) ?? []).forEach((e, i) => {
      const f = `${field}.matchExpressions[${i}]`;
      const expr = this.record(e, f);
      if (expr === undefined) return;
      const key = this.string(expr.key, `${f}.key`);
      if (key === undefined || key === '') return this.issue(`${f}.key`, 'required');
      const keyBad = labelKeyProblem(key);
      if (keyBad !== undefined) return this.issue(`${f}.key`, `${JSON.stringify(key)}: ${keyBad}`);
      const op = expr.operator;
      if (op !== 'In' && op !== 'NotIn' && op !== 'Exists' && op !== 'DoesNotExist') {
        return this.issue(
          `${f}.operator`,
          `${op === undefined ? 'required' : `${JSON.stringify(op)} is not valid`} (valid: "In", "NotIn", "Exists", "DoesNotExist")`,
        );
      }
      const values: string[] = [];
      (this.array(expr.values, `${f}.values`) ?? []).forEach((x, j) => {
        const s = this.string(x, `${f}.values[${j}]`);
        if (s === undefined) return;
        const bad = labelValueProblem(s);
        if (bad !== undefined) this.issue(`${f}.values[${j}]`, `${JSON.stringify(s)} ${bad}`);
        else values.push(s);
      });
      const operator: Operator = op;
      const needsValues = operator === 'In' || operator === 'NotIn';
      const given = Array.isArray(expr.values) ? expr.values.length : 0;
      if (needsValues && given === 0)
        return this.issue(`${f}.values`, `must be non-empty when operator is ${operator}`);
      if (!needsValues && given > 0)
        return this.issue(`${f}.values`, `must be empty when operator is ${operator}`);
      requirements.push({ key, operator, values });
    });
    if (this.issues.length > before) return undefined;
    return canonicalSelector(requirements);
  }

  /** An IP address, normalised; undefined (with an issue) when absent or not an address. */
  address(text: string | undefined, field: string): string | undefined {
    if (text === undefined || text === '') {
      this.issue(field, 'required');
      return undefined;
    }
    const c = parseCidr(`${text}/${text.includes(':') ? 128 : 32}`);
    if (typeof c === 'string' || c.hadHostBits) {
      this.issue(field, `${JSON.stringify(text)} is not an IP address`);
      return undefined;
    }
    return c.text.split('/')[0]!;
  }

  protocol(v: unknown, field: string): Protocol | undefined {
    if (v === undefined || v === null) return 'TCP';
    if (typeof v === 'string' && (PROTOCOLS as readonly string[]).includes(v)) return v as Protocol;
    this.issue(field, `${describe(v)} is not supported (supported: "TCP", "UDP", "SCTP")`);
    return undefined;
  }

  record(v: unknown, field: string): Record<string, unknown> | undefined {
    if (v === undefined || v === null) return undefined;
    if (isRecord(v)) return v;
    this.issue(field, `must be an object, not ${describe(v)}`);
    return undefined;
  }

  array(v: unknown, field: string): unknown[] | undefined {
    if (v === undefined || v === null) return undefined;
    if (Array.isArray(v)) return v;
    this.issue(field, `must be a list, not ${describe(v)}`);
    return undefined;
  }

  string(v: unknown, field: string): string | undefined {
    if (v === undefined || v === null) return undefined;
    if (typeof v === 'string') return v;
    this.issue(field, `must be a string, not ${describe(v)}`);
    return undefined;
  }

  boolean(v: unknown, field: string): boolean | undefined {
    if (v === undefined || v === null) return undefined;
    if (typeof v === 'boolean') return v;
    this.issue(field, `must be true or false, not ${describe(v)}`);
    return undefined;
  }

  integer(v: unknown, field: string): number | undefined {
    if (v === undefined || v === null) return undefined;
    if (typeof v === 'number' && Number.isInteger(v)) return v;
    this.issue(field, `must be an integer, not ${describe(v)}`);
    return undefined;
  }
}
