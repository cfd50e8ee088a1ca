/**
 * Reaching the controller from a kubeconfig context, as antctl and hubble
 * do: through the API server's port-forward to a ready pod of the
 * controller's Service, with @kubernetes/client-node.
 *
 *   weirctl ──gRPC (mTLS)──> 127.0.0.1:<free port> ──WebSocket──> API server ──> kubelet ──> pod:7443
 *
 * The pod is chosen once per run (the first ready pod of the Service's
 * selector, by name: the leader is the one that is ready); every TCP
 * connection gRPC opens is one port-forward stream. TLS stays end to end:
 * the API server carries bytes, weirctl still checks the controller's
 * certificate identity.
 */
import { createServer, type Server, type Socket } from 'node:net';
import { Writable } from 'node:stream';
import {
  ApiException,
  CoreV1Api,
  KubeConfig,
  PortForward,
  type V1Pod,
  type V1Service,
} from '@kubernetes/client-node';
import { compareStrings as cmp } from '../shared/collections.js';
import { NotFoundError, PermissionError, UnavailableError } from '../shared/errors.js';
import { UsageError } from './io.js';

export interface KubeTarget {
  /** A kubeconfig file; default: $KUBECONFIG or ~/.kube/config, as kubectl reads them. */
  readonly kubeconfig?: string | undefined;
  /** A context of it; default: its current-context. */
  readonly context?: string | undefined;
  readonly namespace: string;
  readonly service: string;
  /** The Service port to reach (its targetPort is resolved against the pod). */
  readonly port: number;
}

/** Where Weir's kustomization installs the controller (deploy/base/controller.yaml). */
export const CONTROLLER_SERVICE = { namespace: 'weir-system', service: 'weir-controller' };

export class PortForwarder implements AsyncDisposable {
  private readonly sockets = new Set<Socket>();
  /** The last error a forwarded stream reported (the kubelet's words). */
  lastError = '';

  private constructor(
    private readonly server: Server,
    private readonly kc: KubeConfig,
    /** "namespace/pod" forwarded to. */
    readonly pod: string,
    readonly podPort: number,
    /** The context used (for messages). */
    readonly context: string,
  ) {}

  /** "127.0.0.1:PORT": where gRPC connects. */
  get address(): string {
    const a = this.server.address();
    return `127.0.0.1:${typeof a === 'object' && a !== null ? a.port : 0}`;
  }

  /** What a message says of the route: "pod weir-system/x port 7443 (context prod)". */
  describe(): string {
    return `pod ${this.pod} port ${this.podPort} through the API server of context ${this.context}`;
  }

  static async open(target: KubeTarget): Promise<PortForwarder> {
    const kc = loadKubeConfig(target);
    const context = kc.getCurrentContext();
    const server = kc.getCurrentCluster()?.server ?? '';
    const core = kc.makeApiClient(CoreV1Api);
    const where = `Service ${target.namespace}/${target.service} (context ${context}, ${server})`;
    const svc = await kubeCall(where, () =>
      core.readNamespacedService({ name: target.service, namespace: target.namespace }),
    );
    const selector = svc.spec?.selector ?? {};
    if (Object.keys(selector).length === 0)
      throw new UsageError(`${where} has no pod selector: it cannot be port-forwarded`);
    const labelSelector = Object.entries(selector)
      .map(([k, v]) => `${k}=${v}`)
      .join(',');
    const pods = await kubeCall(where, () =>
      core.listNamespacedPod({ namespace: target.namespace, labelSelector }),
    );
    // Filter here as well: the selector is the Service's, whatever the server made of it.
    const selected = pods.items
      .filter((p) => Object.entries(selector).every(([k, v]) => p.metadata?.labels?.[k] === v))
      .sort((a, b) => cmp(a.metadata?.name ?? '', b.metadata?.name ?? ''));
    const pod = selected.find(ready);
    if (pod === undefined)
      throw new UnavailableError(
        `no ready pod behind ${where}${
          selected.length === 0
            ? ': it selects none (is weir-controller running?)'
            : ` (${selected.map((p) => `${p.metadata?.name}: ${p.status?.phase ?? 'unknown'}${ready(p) ? '' : ', not ready'}`).join('; ')})`
        }`,
      );
    const podPort = targetPort(svc, pod, target.port, where);
    const name = pod.metadata?.name ?? '';
    const listener = createServer();
    const self = new PortForwarder(listener, kc, `${target.namespace}/${name}`, podPort, context);
    listener.on('connection', (socket) => self.forward(socket, target.namespace, name));
    await new Promise<void>((resolve, reject) => {
      listener.once('error', reject);
      listener.listen(0, '127.0.0.1', () => resolve());
    });
    return self;
  }

  private forward(socket: Socket, namespace: string, pod: string): void {
    this.sockets.add(socket);
    socket.on('close', () => this.sockets.delete(socket));
    socket.on('error', () => socket.destroy());
    const errors = new Writable({
      write: (chunk: Buffer, _enc, done) => {
        // The kubelet reports on the error channel, then the stream ends
        // (the channel's opening frame leaves an empty write: not an error).
        const text = chunk.toString('utf8').trim();
        if (text !== '') {
          this.lastError = text;
          socket.destroy();
        }
        done();
      },
    });
    new PortForward(this.kc, true)
      .portForward(namespace, pod, [this.podPort], socket, errors, socket)
      .then((ws) => {
        const w = ws as unknown as { on(e: 'close', f: () => void): void; close(): void };
        w.on('close', () => socket.end());
        socket.on('close', () => w.close());
      })
      .catch((err: unknown) => {
        this.lastError = err instanceof Error ? err.message : String(err);
        socket.destroy();
      });
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}

function loadKubeConfig(target: KubeTarget): KubeConfig {
  const kc = new KubeConfig();
  const file = target.kubeconfig;
  try {
    if (file !== undefined) kc.loadFromFile(file);
    else kc.loadFromDefault();
  } catch (err) {
    throw new UsageError(
      `${file ?? 'the kubeconfig'} cannot be read: ${(err as Error).message.split('\n')[0]}`,
    );
  }
  if (target.context !== undefined) {
    if (kc.getContextObject(target.context) === null)
      throw new UsageError(
        `no context ${JSON.stringify(target.context)} in ${file ?? 'the kubeconfig'} (have: ${
          kc
            .getContexts()
            .map((c) => c.name)
            .join(', ') || 'none'
        })`,
      );
    kc.setCurrentContext(target.context);
  }
  if (kc.getCurrentCluster() === null)
    throw new UsageError(
      `${file ?? 'the kubeconfig'} names no cluster for context ${JSON.stringify(kc.getCurrentContext())}`,
    );
  return kc;
}

/** One API call, its failure as the error table's error with what to check. */
async function kubeCall<T>(where: string, f: () => Promise<T>): Promise<T> {
  try {
    return await f();
  } catch (err) {
    if (err instanceof ApiException) {
      const code = err.code;
      const reason = apiMessage(err.body) ?? `HTTP ${code}`;
      if (code === 404) throw new NotFoundError(`${where}: not found (is Weir installed there?)`);
      if (code === 401 || code === 403)
        throw new PermissionError(
          `${where}: ${reason} (port-forward needs get on services, list on pods and create on pods/portforward)`,
        );
      throw new UnavailableError(`${where}: ${reason}`);
    }
    const e = err as NodeJS.ErrnoException & { cause?: NodeJS.ErrnoException };
    const code = e.code ?? e.cause?.code;
    throw new UnavailableError(
      `cannot reach the API server for ${where}: ${code === 'ECONNREFUSED' ? 'connection refused' : (e.cause?.message ?? e.message)}`,
    );
  }
}

function apiMessage(body: unknown): string | undefined {
  try {
    const o = typeof body === 'string' ? JSON.parse(body) : body;
    return typeof o?.message === 'string' ? o.message : undefined;
  } catch {
    return undefined;
  }
}

function ready(p: V1Pod): boolean {
  return (
    p.status?.phase === 'Running' &&
    (p.status.conditions ?? []).some((c) => c.type === 'Ready' && c.status === 'True')
  );
}

/** The pod port behind Service port `port`: its targetPort, by number or by the container port's name. */
function targetPort(svc: V1Service, pod: V1Pod, port: number, where: string): number {
  const sp = (svc.spec?.ports ?? []).find((p) => p.port === port);
  if (sp === undefined)
    throw new UsageError(
      `${where} has no port ${port} (ports: ${(svc.spec?.ports ?? []).map((p) => p.port).join(', ') || 'none'})`,
    );
  const t = sp.targetPort ?? port;
  if (typeof t === 'number') return t;
  if (/^\d+$/.test(t)) return Number(t);
  for (const c of pod.spec?.containers ?? [])
    for (const cp of c.ports ?? []) if (cp.name === t) return cp.containerPort;
  throw new UsageError(
    `${where}: targetPort ${JSON.stringify(t)} names no container port of pod ${pod.metadata?.name}`,
  );
}
