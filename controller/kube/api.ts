/**
 * Talking to the Kubernetes API server with JSON requests through the client
 * library's own HTTP stack (kubeconfig credentials and TLS), with a timeout
 * per request. Shared by the Kubernetes source and leader election.
 */
import {
  HttpMethod,
  IsomorphicFetchHttpLibrary,
  KubeConfig,
  RequestContext,
} from '@kubernetes/client-node';
import { UnavailableError, ValidationError } from '../../shared/errors.js';

/** An API server answer other than 2xx, or no answer (`status` 0). */
export class KubeApiError extends UnavailableError {
  /** HTTP status; 0 when the request got no response (refused, reset, timed out, aborted). */
  readonly status: number;
  /** The Status `reason` ("NotFound", "Conflict", "AlreadyExists", "Expired", ...), or "" when none. */
  readonly reason: string;
  /** The same as `status`, under the name ListWatch checks for 410. */
  readonly statusCode: number;
  constructor(status: number, reason: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.status = status;
    this.statusCode = status;
    this.reason = reason;
  }
}

export interface KubeApiOptions {
  /** Per request, whatever the caller's signal says (default 30 s). */
  readonly requestTimeoutMs?: number;
  readonly userAgent?: string;
}

/**
 * JSON requests to the API server of a KubeConfig, through the client
 * library's HTTP stack (its credentials, TLS settings and undici). Bodies
 * are sent and returned as the API's own JSON: no model classes.
 */
export class KubeApi {
  readonly server: string;
  private readonly http = new IsomorphicFetchHttpLibrary();

  constructor(
    private readonly kubeConfig: KubeConfig,
    private readonly options: KubeApiOptions = {},
  ) {
    const cluster = kubeConfig.getCurrentCluster();
    if (cluster === null)
      throw new ValidationError([{ message: 'the kubeconfig has no current cluster' }]);
    this.server = cluster.server.replace(/\/+$/, '');
  }

  async request<T>(
    method: 'GET' | 'POST' | 'PUT' | 'DELETE',
    path: string,
    options: { body?: unknown; signal?: AbortSignal; timeoutMs?: number } = {},
  ): Promise<T> {
    const what = `${method} ${path}`;
    const ctx = new RequestContext(this.server + path, HttpMethod[method]);
    ctx.setHeaderParam('Accept', 'application/json');
    ctx.setHeaderParam('User-Agent', this.options.userAgent ?? 'weir-controller');
    if (options.body !== undefined) {
      ctx.setHeaderParam('Content-Type', 'application/json');
      ctx.setBody(JSON.stringify(options.body));
    }
    await this.kubeConfig.applySecurityAuthentication(ctx);
    const timeout = AbortSignal.timeout(
      options.timeoutMs ?? this.options.requestTimeoutMs ?? 30_000,
    );
    ctx.setSignal(options.signal ? AbortSignal.any([timeout, options.signal]) : timeout);
    let status: number;
    let text: string;
    try {
      const res = await this.http.send(ctx).toPromise();
      status = res.httpStatusCode;
      text = await res.body.text();
    } catch (err) {
      throw new KubeApiError(0, '', `${what}: ${describeError(err)}`, { cause: err });
    }
    if (status < 200 || status > 299) {
      let reason = '';
      let message = text.slice(0, 500);
      try {
        const s = JSON.parse(text) as { reason?: unknown; message?: unknown };
        if (typeof s.reason === 'string') reason = s.reason;
        if (typeof s.message === 'string') message = s.message;
      } catch {
        // not a Status: keep the text
      }
      throw new KubeApiError(
        status,
        reason,
        `${what}: ${status}${reason ? ` ${reason}` : ''}: ${message}`,
      );
    }
    try {
      return JSON.parse(text) as T;
    } catch (err) {
      throw new KubeApiError(status, '', `${what}: the answer is not JSON`, { cause: err });
    }
  }
}

/** A KubeConfig from a file, or from the pod's service account. */
export function loadKubeConfig(from: { kubeconfig: string } | { inCluster: true }): KubeConfig {
  const kc = new KubeConfig();
  if ('kubeconfig' in from) kc.loadFromFile(from.kubeconfig);
  else if (!process.env.KUBERNETES_SERVICE_HOST)
    throw new ValidationError([
      { message: 'not running in a pod: KUBERNETES_SERVICE_HOST is not set' },
    ]);
  else kc.loadFromCluster();
  return kc;
}

/** One line for logs and lastError; the library's watch errors carry their HTTP status as `statusCode`. */
export function describeError(err: unknown): string {
  if (err instanceof Error) {
    // A KubeApiError's message already says what its cause was.
    const cause =
      err.cause instanceof Error &&
      !(err instanceof KubeApiError) &&
      err.cause.message !== err.message
        ? ` (${err.cause.message})`
        : '';
    const code = (err as { statusCode?: unknown }).statusCode;
    const status =
      typeof code === 'number' && code > 0 && !(err instanceof KubeApiError) ? `HTTP ${code} ` : '';
    return `${status}${err.message}${cause}`;
  }
  return String(err);
}
