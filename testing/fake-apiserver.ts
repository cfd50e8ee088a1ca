/**
 * A small Kubernetes API server for tests (node:http, loopback, a free
 * port) that speaks the list/watch protocol as kube-apiserver does, for
 * Namespaces, Nodes, Pods, NetworkPolicies, Leases and Events:
 *
 * - one resourceVersion counter for everything (etcd's revision); every
 *   change bumps it and is kept in a history that watches replay from;
 * - list: `{kind: "PodList", metadata: {resourceVersion}, items}`, items
 *   without kind or apiVersion (as the API server sends them), paged with
 *   `limit` and `continue` over a consistent snapshot;
 * - watch (`?watch=true&resourceVersion=N`): HTTP 200 at once, then one JSON
 *   event per line: ADDED, MODIFIED, DELETED for changes after N, BOOKMARK
 *   when asked (`allowWatchBookmarks=true` and a test calls `bookmark()`);
 *   no N (or "0"): synthetic ADDED for every current object first;
 * - N older than the compacted history: `410 Gone`, by default as the API
 *   server sends it for watches (a 200, one ERROR event carrying a Status of
 *   code 410 reason "Expired", end of stream), or as an HTTP 410 response
 *   (`goneAs = 'http'`);
 * - get, create (409 AlreadyExists), replace (409 Conflict on a stale
 *   metadata.resourceVersion; a Lease replace without one is refused with
 *   422, as leases do not allow unconditional updates) and delete;
 *   Lease times must be MicroTime (six fractional digits), as the API
 *   server's parser requires; Events are validated for the namespace of
 *   their involved object, as core/v1 validation does.
 *
 * - list `labelSelector` (equality, inequality, existence: what kubectl -l
 *   and client-node send);
 * - pods/portforward over WebSocket (`v4.channel.k8s.io`, as the kubelet
 *   streams it through the API server): per port a data and an error
 *   channel, each opened by a frame carrying the port (little-endian); the
 *   test says where a pod's port leads (`forwardPod`), an unknown pod or
 *   port is answered on the error channel, as the kubelet does.
 *
 * And for the test: change objects directly (`apply`, `remove`), compact
 * the history, drop open watches (cleanly or by resetting the socket), hold
 * new watch requests unanswered until released, fail requests that match a
 * rule, and read the request log and the Events recorded.
 */
import { randomUUID } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { type AddressInfo, connect, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { WebSocketServer, type WebSocket } from 'ws';
import { KubeConfig } from '@kubernetes/client-node';

export type Obj = {
  apiVersion?: string;
  kind?: string;
  metadata?: Record<string, unknown> & {
    name?: string;
    namespace?: string;
    resourceVersion?: string;
    uid?: string;
  };
} & Record<string, unknown>;

interface ResourceType {
  readonly resource: string;
  readonly group: string;
  readonly version: string;
  readonly kind: string;
  readonly namespaced: boolean;
}

const TYPES: readonly ResourceType[] = [
  { resource: 'namespaces', group: '', version: 'v1', kind: 'Namespace', namespaced: false },
  { resource: 'nodes', group: '', version: 'v1', kind: 'Node', namespaced: false },
  { resource: 'pods', group: '', version: 'v1', kind: 'Pod', namespaced: true },
  { resource: 'events', group: '', version: 'v1', kind: 'Event', namespaced: true },
  { resource: 'services', group: '', version: 'v1', kind: 'Service', namespaced: true },
  {
    resource: 'networkpolicies',
    group: 'networking.k8s.io',
    version: 'v1',
    kind: 'NetworkPolicy',
    namespaced: true,
  },
  {
    resource: 'clusternetworkpolicies',
    group: 'policy.networking.k8s.io',
    version: 'v1alpha2',
    kind: 'ClusterNetworkPolicy',
    namespaced: false,
  },
  {
    resource: 'leases',
    group: 'coordination.k8s.io',
    version: 'v1',
    kind: 'Lease',
    namespaced: true,
  },
];

const apiVersionOf = (t: ResourceType) => (t.group === '' ? t.version : `${t.group}/${t.version}`);
const qualified = (t: ResourceType) => (t.group === '' ? t.resource : `${t.resource}.${t.group}`);
const MICRO_TIME = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}(Z|[+-]\d\d:\d\d)$/;

interface Change {
  readonly rv: number;
  readonly type: 'ADDED' | 'MODIFIED' | 'DELETED';
  readonly resource: string;
  readonly namespace: string;
  readonly object: Obj;
}

interface Watcher {
  readonly type: ResourceType;
  /** Only this namespace; undefined: all. */
  readonly namespace: string | undefined;
  readonly bookmarks: boolean;
  readonly res: ServerResponse;
}

export interface FailRule {
  readonly method?: string;
  /** Matched against the path (no query). */
  readonly path?: RegExp;
  /** Only watch requests (true), only others (false), or both. */
  readonly watch?: boolean;
  readonly status: number;
  readonly reason?: string;
  /** How many requests to fail (default: every one until cleared). */
  readonly times?: number;
}

export interface RequestRecord {
  readonly method: string;
  readonly path: string;
  readonly query: URLSearchParams;
  readonly watch: boolean;
}

class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly reason: string,
    message: string,
    readonly details?: Record<string, unknown>,
  ) {
    super(message);
  }
}

export class FakeApiServer implements AsyncDisposable {
  /** How a watch from a compacted resourceVersion is refused. */
  goneAs: 'event' | 'http' = 'event';
  readonly requests: RequestRecord[] = [];
  private rv = 100;
  private compactedRv = 0;
  private readonly store = new Map<string, Map<string, Obj>>(
    TYPES.map((t) => [t.resource, new Map()]),
  );
  private history: Change[] = [];
  private readonly watchers = new Set<Watcher>();
  private held: Array<() => void> | undefined;
  private readonly failRules: Array<FailRule & { left: number; hits: number }> = [];
  private readonly snapshots = new Map<string, { rv: number; items: Obj[] }>();

  private constructor(
    private readonly server: Server,
    readonly url: string,
  ) {}

  /** "namespace/pod:port" → where a port-forward to it connects. */
  private readonly forwards = new Map<string, { host: string; port: number }>();
  private readonly webSockets = new WebSocketServer({
    noServer: true,
    handleProtocols: (offered) => (offered.has('v4.channel.k8s.io') ? 'v4.channel.k8s.io' : false),
  });

  /** Where a port-forward to the pod's port leads (a real server the test runs). */
  forwardPod(namespace: string, pod: string, port: number, to: { host: string; port: number }) {
    this.forwards.set(`${namespace}/${pod}:${port}`, to);
  }

  static async start(): Promise<FakeApiServer> {
    let self: FakeApiServer | undefined;
    const server = createServer((req, res) => void self!.handle(req, res));
    server.on('upgrade', (req, socket, head) => self!.upgrade(req, socket, head));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () => resolve());
    });
    self = new FakeApiServer(server, `http://127.0.0.1:${(server.address() as AddressInfo).port}`);
    return self;
  }

  /** A KubeConfig for this server: plain HTTP, so the cluster entry skips TLS verification. */
  kubeConfig(): KubeConfig {
    const kc = new KubeConfig();
    kc.loadFromOptions({
      clusters: [{ name: 'fake', server: this.url, skipTLSVerify: true }],
      users: [{ name: 'tester', token: 'fake-token' }],
      contexts: [{ name: 'fake', cluster: 'fake', user: 'tester' }],
      currentContext: 'fake',
    });
    return kc;
  }

  async writeKubeConfig(file: string): Promise<void> {
    await writeFile(file, this.kubeConfig().exportConfig());
  }

  get resourceVersion(): number {
    return this.rv;
  }

  // --- the test's side ---------------------------------------------------------

  /** Creates or replaces an object (no resourceVersion check); returns it as stored. */
  /** Resources answered 404, as an API server answers for a CRD that is not installed. */
  readonly unserved = new Set<string>();

  apply(obj: Obj): Obj {
    const t = typeOfKind(obj.kind);
    const ns = t.namespaced ? String(obj.metadata?.namespace ?? 'default') : '';
    const existing = this.store.get(t.resource)!.get(`${ns}/${obj.metadata?.name}`);
    const copy = structuredClone(obj);
    if (existing !== undefined) {
      copy.metadata = { ...copy.metadata, resourceVersion: existing.metadata!.resourceVersion };
      return this.replace(t, ns, copy);
    }
    return this.create(t, ns, copy);
  }

  /** Deletes an object; false when there was none. */
  remove(kind: string, namespace: string, name: string): boolean {
    const t = typeOfKind(kind);
    try {
      this.delete(t, t.namespaced ? namespace : '', name);
      return true;
    } catch {
      return false;
    }
  }

  get(kind: string, namespace: string, name: string): Obj | undefined {
    const t = typeOfKind(kind);
    const o = this.store.get(t.resource)!.get(`${t.namespaced ? namespace : ''}/${name}`);
    return o && structuredClone(o);
  }

  /** Events recorded through the API (POST .../events). */
  events(): Obj[] {
    return [...this.store.get('events')!.values()].map((o) => structuredClone(o));
  }

  /** Forgets the history up to now: a watch from an older resourceVersion gets 410 Gone. */
  compact(): void {
    this.compactedRv = this.rv;
    this.history = [];
    for (const [k, s] of this.snapshots) if (s.rv < this.compactedRv) this.snapshots.delete(k);
  }

  /** Ends every open watch (of one resource, or all): cleanly, or by resetting the connection. Returns how many. */
  dropWatches(options: { resource?: string; abrupt?: boolean } = {}): number {
    let n = 0;
    for (const w of [...this.watchers]) {
      if (options.resource !== undefined && w.type.resource !== options.resource) continue;
      this.watchers.delete(w);
      if (options.abrupt) w.res.socket?.destroy();
      else w.res.end();
      n++;
    }
    return n;
  }

  /** Open watches, by resource. */
  openWatches(resource?: string): number {
    return [...this.watchers].filter((w) => resource === undefined || w.type.resource === resource)
      .length;
  }

  /** New watch requests wait, unanswered, until `releaseWatches()`. */
  holdWatches(): void {
    this.held ??= [];
  }

  releaseWatches(): void {
    const held = this.held ?? [];
    this.held = undefined;
    for (const go of held) go();
  }

  heldWatches(): number {
    return this.held?.length ?? 0;
  }

  /** Sends a BOOKMARK at the current resourceVersion to every watch that allowed bookmarks. Returns how many. */
  bookmark(resource?: string): number {
    let n = 0;
    for (const w of this.watchers) {
      if (!w.bookmarks || (resource !== undefined && w.type.resource !== resource)) continue;
      this.send(w, {
        type: 'BOOKMARK',
        object: {
          kind: w.type.kind,
          apiVersion: apiVersionOf(w.type),
          metadata: { resourceVersion: String(this.rv) },
        },
      });
      n++;
    }
    return n;
  }

  /** Requests matching the rule are answered with its status until `clear()` (or `times` of them). */
  fail(rule: FailRule): { clear(): void; readonly hits: number } {
    const r = { ...rule, left: rule.times ?? Infinity, hits: 0 };
    this.failRules.push(r);
    return {
      clear: () => {
        const i = this.failRules.indexOf(r);
        if (i >= 0) this.failRules.splice(i, 1);
      },
      get hits() {
        return r.hits;
      },
    };
  }

  /** Requests seen, filtered. */
  count(filter: { method?: string; resource?: string; watch?: boolean }): number {
    return this.requests.filter(
      (r) =>
        (filter.method === undefined || r.method === filter.method) &&
        (filter.watch === undefined || r.watch === filter.watch) &&
        (filter.resource === undefined || new RegExp(`/${filter.resource}(/|$)`).test(r.path)),
    ).length;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    for (const ws of this.webSockets.clients) ws.terminate();
    this.webSockets.close();
    this.releaseWatches();
    for (const w of this.watchers) w.res.end();
    this.watchers.clear();
    await new Promise<void>((resolve) => {
      this.server.close(() => resolve());
      this.server.closeAllConnections();
    });
  }

  // --- storage -------------------------------------------------------------------

  private record(t: ResourceType, ns: string, type: Change['type'], object: Obj): void {
    const change: Change = {
      rv: this.rv,
      type,
      resource: t.resource,
      namespace: ns,
      object: structuredClone(object),
    };
    this.history.push(change);
    for (const w of this.watchers)
      if (this.matches(w, change)) this.send(w, { type, object: change.object });
  }

  private create(t: ResourceType, ns: string, obj: Obj): Obj {
    const name = obj.metadata?.name;
    if (typeof name !== 'string' || name === '')
      throw new HttpError(
        422,
        'Invalid',
        `${t.kind} "" is invalid: metadata.name: Required value: name or generateName is required`,
      );
    const objects = this.store.get(t.resource)!;
    if (objects.has(`${ns}/${name}`))
      throw new HttpError(409, 'AlreadyExists', `${qualified(t)} "${name}" already exists`, {
        name,
        group: t.group,
        kind: t.resource,
      });
    this.rv += 1;
    const stored: Obj = {
      ...obj,
      apiVersion: apiVersionOf(t),
      kind: t.kind,
      metadata: {
        ...obj.metadata,
        name,
        ...(t.namespaced ? { namespace: ns } : {}),
        uid: randomUUID(),
        resourceVersion: String(this.rv),
        creationTimestamp: new Date().toISOString().replace(/\.\d+Z$/, 'Z'),
      },
    };
    if (t.namespaced === false) delete stored.metadata!.namespace;
    objects.set(`${ns}/${name}`, stored);
    this.record(t, ns, 'ADDED', stored);
    return structuredClone(stored);
  }

  private replace(t: ResourceType, ns: string, obj: Obj, requireVersion = false): Obj {
    const name = String(obj.metadata?.name ?? '');
    const objects = this.store.get(t.resource)!;
    const existing = objects.get(`${ns}/${name}`);
    if (existing === undefined)
      throw new HttpError(404, 'NotFound', `${qualified(t)} "${name}" not found`, {
        name,
        group: t.group,
        kind: t.resource,
      });
    const given = obj.metadata?.resourceVersion;
    if (given === undefined || given === '') {
      if (requireVersion)
        throw new HttpError(
          422,
          'Invalid',
          `${t.kind} "${name}" is invalid: metadata.resourceVersion: Invalid value: 0x0: must be specified for an update`,
        );
    } else if (given !== existing.metadata!.resourceVersion) {
      throw new HttpError(
        409,
        'Conflict',
        `Operation cannot be fulfilled on ${qualified(t)} "${name}": the object has been modified; please apply your changes to the latest version and try again`,
        {
          name,
          group: t.group,
          kind: t.resource,
        },
      );
    }
    this.rv += 1;
    const stored: Obj = {
      ...obj,
      apiVersion: apiVersionOf(t),
      kind: t.kind,
      metadata: {
        ...obj.metadata,
        name,
        uid: existing.metadata!.uid,
        creationTimestamp: existing.metadata!.creationTimestamp,
        resourceVersion: String(this.rv),
        ...(t.namespaced ? { namespace: ns } : {}),
      },
    };
    objects.set(`${ns}/${name}`, stored);
    this.record(t, ns, 'MODIFIED', stored);
    return structuredClone(stored);
  }

  private delete(t: ResourceType, ns: string, name: string): Obj {
    const objects = this.store.get(t.resource)!;
    const existing = objects.get(`${ns}/${name}`);
    if (existing === undefined)
      throw new HttpError(404, 'NotFound', `${qualified(t)} "${name}" not found`, {
        name,
        group: t.group,
        kind: t.resource,
      });
    objects.delete(`${ns}/${name}`);
    this.rv += 1;
    // The deleted object carries the resourceVersion of its deletion.
    const last: Obj = {
      ...existing,
      metadata: { ...existing.metadata, resourceVersion: String(this.rv) },
    };
    this.record(t, ns, 'DELETED', last);
    return structuredClone(last);
  }

  // --- HTTP ------------------------------------------------------------------------

  /** pods/portforward: the one WebSocket endpoint; anything else is refused as the API server does. */
  private upgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    const url = new URL(req.url ?? '/', this.url);
    this.requests.push({
      method: 'GET',
      path: url.pathname,
      query: url.searchParams,
      watch: false,
    });
    const refuse = (code: number, text: string) => {
      socket.end(`HTTP/1.1 ${code} ${text}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n`);
    };
    const m = /^\/api\/v1\/namespaces\/([^/]+)\/pods\/([^/]+)\/portforward$/.exec(url.pathname);
    if (m === null) {
      refuse(404, 'Not Found');
      return;
    }
    const rule = this.failRules.find(
      (r) =>
        r.left > 0 &&
        (r.method === undefined || r.method === 'GET') &&
        (r.path === undefined || r.path.test(url.pathname)) &&
        r.watch !== true,
    );
    if (rule !== undefined) {
      rule.left -= 1;
      rule.hits += 1;
      refuse(rule.status, rule.reason ?? 'Error');
      return;
    }
    const [, namespace, pod] = m.map((x) => decodeURIComponent(x ?? ''));
    if (!this.store.get('pods')!.has(`${namespace}/${pod}`)) {
      refuse(404, 'Not Found');
      return;
    }
    const port = Number(url.searchParams.get('ports'));
    this.webSockets.handleUpgrade(req, socket, head, (ws) =>
      this.portForward(ws, port, this.forwards.get(`${namespace}/${pod}:${port}`)),
    );
  }

  private portForward(ws: WebSocket, port: number, to: { host: string; port: number } | undefined) {
    const opening = (channel: number) => Buffer.from([channel, port & 0xff, port >> 8]);
    ws.send(opening(0));
    ws.send(opening(1));
    if (to === undefined) {
      ws.send(
        Buffer.concat([
          Buffer.from([1]),
          Buffer.from(`error forwarding port ${port}: connection refused`),
        ]),
      );
      ws.close();
      return;
    }
    const upstream: Socket = connect(to.port, to.host);
    upstream.on('data', (data) => ws.send(Buffer.concat([Buffer.from([0]), data])));
    upstream.on('error', (err) => {
      if (ws.readyState === ws.OPEN)
        ws.send(
          Buffer.concat([
            Buffer.from([1]),
            Buffer.from(`error forwarding port ${port}: ${err.message}`),
          ]),
        );
      ws.close();
    });
    upstream.on('close', () => ws.close());
    ws.on('message', (data: Buffer) => {
      if (data.length > 1 && data[0] === 0) upstream.write(data.subarray(1));
    });
    ws.on('close', () => upstream.destroy());
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', this.url);
    const watch = url.searchParams.get('watch') === 'true' || url.searchParams.get('watch') === '1';
    const method = req.method ?? 'GET';
    this.requests.push({ method, path: url.pathname, query: url.searchParams, watch });
    try {
      const body = await readBody(req);
      const rule = this.failRules.find(
        (r) =>
          r.left > 0 &&
          (r.method === undefined || r.method === method) &&
          (r.path === undefined || r.path.test(url.pathname)) &&
          (r.watch === undefined || r.watch === watch),
      );
      if (rule !== undefined) {
        rule.left -= 1;
        rule.hits += 1;
        throw new HttpError(
          rule.status,
          rule.reason ?? 'InternalError',
          `injected failure (${rule.status})`,
        );
      }
      const route = parsePath(url.pathname);
      if (route === undefined || this.unserved.has(route.type.resource))
        throw new HttpError(
          404,
          'NotFound',
          `the server could not find the requested resource (${url.pathname})`,
        );
      const { type: t, namespace, name } = route;
      if (method === 'GET' && name === undefined && watch)
        return this.startWatch(t, namespace, url.searchParams, res);
      if (method === 'GET' && name === undefined)
        return json(res, 200, this.list(t, namespace, url.searchParams));
      if (method === 'GET') {
        const o = this.store.get(t.resource)!.get(`${namespace ?? ''}/${name}`);
        if (o === undefined)
          throw new HttpError(404, 'NotFound', `${qualified(t)} "${name}" not found`, {
            name,
            group: t.group,
            kind: t.resource,
          });
        return json(res, 200, o);
      }
      if (method === 'DELETE' && name !== undefined)
        return json(res, 200, this.delete(t, namespace ?? '', name));
      if (method !== 'POST' && method !== 'PUT')
        throw new HttpError(405, 'MethodNotAllowed', `${method} is not supported here`);
      let obj: Obj;
      try {
        obj = JSON.parse(body) as Obj;
      } catch {
        throw new HttpError(400, 'BadRequest', 'the body is not JSON');
      }
      if (typeof obj !== 'object' || obj === null)
        throw new HttpError(400, 'BadRequest', 'the body is not an object');
      if (obj.kind !== undefined && obj.kind !== t.kind)
        throw new HttpError(
          400,
          'BadRequest',
          `${obj.kind} in the body of a ${t.resource} request`,
        );
      const ns = t.namespaced ? (namespace ?? '') : '';
      const bodyNs = obj.metadata?.namespace;
      if (t.namespaced && bodyNs !== undefined && bodyNs !== '' && bodyNs !== ns)
        throw new HttpError(
          400,
          'BadRequest',
          'the namespace of the provided object does not match the namespace sent on the request',
        );
      this.validate(t, ns, obj);
      if (method === 'POST' && name === undefined) return json(res, 201, this.create(t, ns, obj));
      if (method === 'PUT' && name !== undefined) {
        if (obj.metadata?.name !== name)
          throw new HttpError(
            400,
            'BadRequest',
            'the name of the object does not match the name on the URL',
          );
        return json(res, 200, this.replace(t, ns, obj, t.resource === 'leases'));
      }
      throw new HttpError(405, 'MethodNotAllowed', `${method} is not supported here`);
    } catch (err) {
      const e = err instanceof HttpError ? err : new HttpError(500, 'InternalError', String(err));
      if (!res.headersSent) json(res, e.status, status(e));
      else res.end();
    }
  }

  private validate(t: ResourceType, ns: string, obj: Obj): void {
    if (t.resource === 'leases') {
      const spec = (obj.spec ?? {}) as Record<string, unknown>;
      for (const f of ['acquireTime', 'renewTime']) {
        const v = spec[f];
        if (v !== undefined && v !== null && (typeof v !== 'string' || !MICRO_TIME.test(v))) {
          throw new HttpError(
            400,
            'BadRequest',
            `Lease in version "v1" cannot be handled as a Lease: parsing time ${JSON.stringify(v)} as "2006-01-02T15:04:05.000000Z07:00": cannot parse as ".000000"`,
          );
        }
      }
    }
    if (t.resource === 'events') {
      const involved = (obj.involvedObject ?? {}) as Record<string, unknown>;
      const ins = typeof involved.namespace === 'string' ? involved.namespace : '';
      const ok = ins === '' ? ns === '' || ns === 'default' : ins === ns;
      if (!ok)
        throw new HttpError(
          422,
          'Invalid',
          `Event "${obj.metadata?.name}" is invalid: involvedObject.namespace: Invalid value: "${ins}": does not match event.namespace`,
        );
    }
  }

  private list(t: ResourceType, namespace: string | undefined, q: URLSearchParams) {
    const limit = Number(q.get('limit') ?? '0');
    const token = q.get('continue');
    let snap: { rv: number; items: Obj[] };
    let offset = 0;
    if (token) {
      const [id, off] = Buffer.from(token, 'base64url').toString().split(':');
      const s = this.snapshots.get(id ?? '');
      if (s === undefined) {
        throw new HttpError(
          410,
          'Expired',
          'The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.',
        );
      }
      snap = s;
      offset = Number(off);
    } else {
      const items = [...this.store.get(t.resource)!.entries()]
        .filter(([k]) => namespace === undefined || k.startsWith(`${namespace}/`))
        .filter(([, o]) => matchesLabelSelector(o, q.get('labelSelector')))
        .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
        .map(([, o]) => {
          const { kind: _k, apiVersion: _a, ...rest } = o;
          return structuredClone(rest) as Obj;
        });
      snap = { rv: this.rv, items };
    }
    const page = limit > 0 ? snap.items.slice(offset, offset + limit) : snap.items.slice(offset);
    const metadata: Record<string, unknown> = { resourceVersion: String(snap.rv) };
    if (limit > 0 && offset + limit < snap.items.length) {
      const id = token ? Buffer.from(token, 'base64url').toString().split(':')[0]! : randomUUID();
      this.snapshots.set(id, snap);
      metadata.continue = Buffer.from(`${id}:${offset + limit}`).toString('base64url');
      metadata.remainingItemCount = snap.items.length - offset - limit;
    }
    return { kind: `${t.kind}List`, apiVersion: apiVersionOf(t), metadata, items: page };
  }

  private startWatch(
    t: ResourceType,
    namespace: string | undefined,
    q: URLSearchParams,
    res: ServerResponse,
  ): void {
    const go = () => {
      if (res.destroyed || res.writableEnded) return;
      const from = q.get('resourceVersion') ?? '';
      const n = from === '' ? 0 : Number(from);
      if (from !== '' && from !== '0' && (!Number.isInteger(n) || n < 0))
        return json(
          res,
          400,
          status(new HttpError(400, 'BadRequest', `invalid resource version: ${from}`)),
        );
      const expired = from !== '' && from !== '0' && n < this.compactedRv;
      const gone = new HttpError(
        410,
        'Expired',
        `too old resource version: ${from} (${this.compactedRv})`,
      );
      if (expired && this.goneAs === 'http') return json(res, 410, status(gone));
      res.writeHead(200, { 'Content-Type': 'application/json', 'Transfer-Encoding': 'chunked' });
      res.flushHeaders();
      if (expired) {
        res.end(`${JSON.stringify({ type: 'ERROR', object: status(gone) })}\n`);
        return;
      }
      const w: Watcher = {
        type: t,
        namespace,
        bookmarks: q.get('allowWatchBookmarks') === 'true',
        res,
      };
      if (from === '' || from === '0') {
        for (const [k, o] of this.store.get(t.resource)!)
          if (namespace === undefined || k.startsWith(`${namespace}/`))
            this.send(w, { type: 'ADDED', object: o });
      } else {
        for (const c of this.history)
          if (c.rv > n && this.matches(w, c)) this.send(w, { type: c.type, object: c.object });
      }
      this.watchers.add(w);
      res.on('close', () => this.watchers.delete(w));
      const timeout = Number(q.get('timeoutSeconds') ?? '0');
      if (timeout > 0) {
        setTimeout(() => {
          this.watchers.delete(w);
          res.end();
        }, timeout * 1000).unref();
      }
    };
    if (this.held !== undefined) this.held.push(go);
    else go();
  }

  private matches(w: Watcher, c: Change): boolean {
    return (
      w.type.resource === c.resource && (w.namespace === undefined || w.namespace === c.namespace)
    );
  }

  private send(w: Watcher, event: { type: string; object: unknown }): void {
    if (!w.res.writableEnded && !w.res.destroyed) w.res.write(`${JSON.stringify(event)}\n`);
  }
}

function typeOfKind(kind: unknown): ResourceType {
  const t = TYPES.find((x) => x.kind === kind);
  if (t === undefined) throw new Error(`the fake API server does not serve ${String(kind)}`);
  return t;
}

/** /api/v1/[namespaces/NS/]RESOURCE[/NAME] or /apis/GROUP/VERSION/[namespaces/NS/]RESOURCE[/NAME]. */
function parsePath(
  path: string,
): { type: ResourceType; namespace: string | undefined; name: string | undefined } | undefined {
  const parts = path
    .split('/')
    .filter((p) => p !== '')
    .map(decodeURIComponent);
  let group: string;
  let version: string;
  let rest: string[];
  if (parts[0] === 'api' && parts.length >= 3)
    [group, version, rest] = ['', parts[1]!, parts.slice(2)];
  else if (parts[0] === 'apis' && parts.length >= 4)
    [group, version, rest] = [parts[1]!, parts[2]!, parts.slice(3)];
  else return undefined;
  let namespace: string | undefined;
  if (rest[0] === 'namespaces' && rest.length >= 3) {
    namespace = rest[1];
    rest = rest.slice(2);
  }
  if (rest.length < 1 || rest.length > 2) return undefined;
  const type = TYPES.find(
    (t) => t.group === group && t.version === version && t.resource === rest[0],
  );
  if (type === undefined || (namespace !== undefined && !type.namespaced)) return undefined;
  return { type, namespace, name: rest[1] };
}

function status(e: HttpError) {
  return {
    kind: 'Status',
    apiVersion: 'v1',
    metadata: {},
    status: 'Failure',
    message: e.message,
    reason: e.reason,
    ...(e.details ? { details: e.details } : {}),
    code: e.status,
  };
}

function json(res: ServerResponse, code: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(code, {
    'Content-Type': 'application/json',
    'Content-Length': Buffer.byteLength(text),
  });
  res.end(text);
}

async function readBody(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of req) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

/** Whether an object's labels satisfy a label selector as the API server reads it (=, ==, !=, key, !key). */
function matchesLabelSelector(o: Obj, selector: string | null): boolean {
  if (selector === null || selector.trim() === '') return true;
  const labels = ((o.metadata as Record<string, unknown> | undefined)?.labels ?? {}) as Record<
    string,
    string
  >;
  return selector.split(',').every((term) => {
    const t = term.trim();
    const ne = /^([^!=]+)!=(.*)$/.exec(t);
    if (ne) return labels[ne[1]!.trim()] !== ne[2]!.trim();
    const eq = /^([^!=]+)==?(.*)$/.exec(t);
    if (eq) return labels[eq[1]!.trim()] === eq[2]!.trim();
    if (t.startsWith('!')) return !Object.hasOwn(labels, t.slice(1).trim());
    return Object.hasOwn(labels, t);
  });
}
