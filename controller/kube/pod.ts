/** Pods as Weir reads them: where they run, their addresses, labels and named ports. */
import type { Labels, NamedPort } from '../../shared/policy/types.js';
import { portNameProblem, type Reader } from './common.js';

export interface PodObject {
  readonly kind: 'Pod';
  readonly namespace: string;
  readonly name: string;
  readonly uid: string;
  readonly node: string;
  readonly hostNetwork: boolean;
  readonly phase: string;
  /** status.podIPs (or podIP), primary first. */
  readonly ips: readonly string[];
  readonly labels: Labels;
  /** Container ports that have names. */
  readonly ports: readonly NamedPort[];
}

export function readPod(r: Reader, raw: Record<string, unknown>): PodObject | undefined {
  const meta = r.metadata(raw, 'Pod', true);
  if (meta === undefined) return undefined;
  const spec = r.record(raw.spec, 'spec') ?? {};
  const status = r.record(raw.status, 'status') ?? {};
  const node = r.string(spec.nodeName, 'spec.nodeName') ?? '';
  const hostNetwork = r.boolean(spec.hostNetwork, 'spec.hostNetwork') ?? false;
  const phase = r.string(status.phase, 'status.phase') ?? '';

  const ips: string[] = [];
  const addIp = (v: unknown, field: string) => {
    const s = r.string(v, field);
    if (s === undefined || s === '') return;
    const ip = r.address(s, field);
    if (ip !== undefined && !ips.includes(ip)) ips.push(ip);
  };
  addIp(status.podIP, 'status.podIP');
  (r.array(status.podIPs, 'status.podIPs') ?? []).forEach((p, i) => {
    const rec = r.record(p, `status.podIPs[${i}]`);
    if (rec !== undefined) addIp(rec.ip, `status.podIPs[${i}].ip`);
  });

  const ports: NamedPort[] = [];
  (r.array(spec.containers, 'spec.containers') ?? []).forEach((c, ci) => {
    const container = r.record(c, `spec.containers[${ci}]`);
    if (container === undefined) return;
    (r.array(container.ports, `spec.containers[${ci}].ports`) ?? []).forEach((p, pi) => {
      const f = `spec.containers[${ci}].ports[${pi}]`;
      const port = r.record(p, f);
      if (port === undefined) return;
      const number = r.integer(port.containerPort, `${f}.containerPort`);
      if (number === undefined) r.issue(`${f}.containerPort`, 'required');
      else if (number < 1 || number > 65535)
        r.issue(`${f}.containerPort`, `${number} is not between 1 and 65535`);
      const protocol = r.protocol(port.protocol, `${f}.protocol`);
      const name = r.string(port.name, `${f}.name`);
      if (name === undefined || name === '') return;
      const bad = portNameProblem(name);
      if (bad !== undefined) r.issue(`${f}.name`, `${JSON.stringify(name)} ${bad}`);
      else if (number !== undefined && protocol !== undefined)
        ports.push({ name, protocol, port: number });
    });
  });
  return {
    kind: 'Pod',
    namespace: meta.namespace,
    name: meta.name,
    uid: meta.uid,
    node,
    hostNetwork,
    phase,
    ips,
    labels: meta.labels,
    ports,
  };
}
