/**
 * The flow table: the contract (flow-table.ts), the packed batch formats
 * (packed.ts), and `createFlowTable`, which picks the implementation.
 */
import { UnavailableError } from '../../shared/errors.js';
import type { FlowTable, FlowTableOptions } from './flow-table.js';
import { NativeFlowTable, nativeFlowTableAvailability } from './native-flow-table.js';
import { TypeScriptFlowTable } from './typescript-flow-table.js';

export * from './flow-table.js';
export {
  ACTIONS,
  decodeResult,
  FLOW_DIRECTIONS,
  DROP_REASONS,
  encodeResult,
  FLOW_KEY_RECORD_BYTES,
  FlowKeyBatch,
  isU32,
  readFlowKey,
  RESULT_MISS,
  resultActionCode,
  resultDirectionCode,
  resultIndex,
  writeFlowKey,
  writeFlowKeyAt,
} from './packed.js';
export { NativeFlowTable, nativeFlowTableAvailability } from './native-flow-table.js';
export { TypeScriptFlowTable } from './typescript-flow-table.js';

export interface CreateFlowTableOptions extends FlowTableOptions {
  /**
   * 'auto' (default): native when the addon loads (see
   * vrouter-agent/native/loader.ts: WEIR_NATIVE=0 forces TypeScript,
   * WEIR_NATIVE=1 makes a missing addon an error), TypeScript otherwise.
   * 'native' throws when the addon is unavailable; 'typescript' never loads it.
   */
  readonly implementation?: 'auto' | 'native' | 'typescript';
}

export interface CreatedFlowTable {
  readonly table: FlowTable;
  readonly implementation: 'native' | 'typescript';
  /** Why this implementation: the addon's load path, or why it did not load. */
  readonly reason: string;
}

export function createFlowTable(options: CreateFlowTableOptions = {}): CreatedFlowTable {
  const { implementation = 'auto', ...tableOptions } = options;
  if (implementation === 'typescript') {
    return {
      table: new TypeScriptFlowTable(tableOptions),
      implementation: 'typescript',
      reason: 'TypeScript implementation requested',
    };
  }
  const native = nativeFlowTableAvailability();
  if (native.available)
    return {
      table: new NativeFlowTable(tableOptions),
      implementation: 'native',
      reason: native.reason,
    };
  if (implementation === 'native')
    throw new UnavailableError(`native flow table requested but unavailable: ${native.reason}`);
  return {
    table: new TypeScriptFlowTable(tableOptions),
    implementation: 'typescript',
    reason: native.reason,
  };
}
