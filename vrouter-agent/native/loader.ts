/**
 * Loads the native addon when it can. WEIR_NATIVE=0 forces the TypeScript
 * implementations, WEIR_NATIVE=1 makes a missing addon an error; unset, the
 * addon is used when it loads. `nativeStatus()` says which is active and why.
 */
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { UnavailableError } from '../../shared/errors.js';

export interface NativeStatus {
  readonly active: boolean;
  /** Why: "loaded from …", "disabled by WEIR_NATIVE=0", or the load error. */
  readonly reason: string;
}

/** The addon's exports; each part (flow table, evaluator) declares its own shape where it is used. */
export type NativeAddon = Record<string, unknown>;

let cached: { addon: NativeAddon | undefined; status: NativeStatus } | undefined;

function load(): { addon: NativeAddon | undefined; status: NativeStatus } {
  const mode = process.env.WEIR_NATIVE;
  if (mode === '0')
    return { addon: undefined, status: { active: false, reason: 'disabled by WEIR_NATIVE=0' } };
  // From the sources (vrouter-agent/native) or the build (dist/vrouter-agent/native): the addon lives in the source tree.
  const candidates = [
    './build/Release/weir_native.node',
    '../../../vrouter-agent/native/build/Release/weir_native.node',
  ];
  const require = createRequire(import.meta.url);
  let lastError: unknown;
  for (const c of candidates) {
    const path = fileURLToPath(new URL(c, import.meta.url));
    try {
      return {
        addon: require(path) as NativeAddon,
        status: { active: true, reason: `loaded from ${path}` },
      };
    } catch (err) {
      lastError = err;
    }
  }
  const reason = `native addon unavailable: ${lastError instanceof Error ? lastError.message.split('\n')[0] : String(lastError)}`;
  if (mode === '1')
    throw new UnavailableError(`${reason} (WEIR_NATIVE=1 requires it; run npm run build:native)`);
  return { addon: undefined, status: { active: false, reason } };
}

/** The addon, or undefined when the TypeScript implementations are in use. */
export function nativeAddon(): NativeAddon | undefined {
  cached ??= load();
  return cached.addon;
}

export function nativeStatus(): NativeStatus {
  cached ??= load();
  return cached.status;
}
