/**
 * The lab's state record: what `weirctl lab up` made, so that `probe` can
 * bring it up to date and `down` can remove it, also after a crash. It is
 * written (whole, by rename) before each thing it names is made: a run that
 * dies part-way leaves a record that names at least everything that exists.
 * Every name the lab makes carries the lab's id (weir-<id>-...), so that two
 * labs never share one and `down` can also find what the record missed.
 */
import { randomBytes } from 'node:crypto';
import { readFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { InternalError, UnavailableError } from '../shared/errors.js';
import type { FabricRoute } from './lab-net.js';

export const STATE_FILE = 'lab.json';
/** Lab names: they become directory names. */
export const LAB_NAME = /^[a-z0-9][a-z0-9-]{0,30}$/;

export interface LabNode {
  readonly index: number;
  readonly netns: string;
  readonly addresses: readonly string[];
  routes: FabricRoute[];
  agentPid?: number;
}

export interface LabPod {
  readonly index: number;
  readonly netns: string;
  readonly node: string;
  readonly ips: readonly string[];
}

export interface LabState {
  readonly version: 1;
  /** 8 hex digits, in every name the lab makes. */
  readonly id: string;
  readonly name: string;
  /** The manifest directory (absolute). */
  readonly dir: string;
  readonly nodesOption?: number;
  readonly datapath: 'nftables' | 'userspace';
  readonly agentArgs: readonly string[];
  /** Where the controller serves the web console (loopback HTTP), when the lab has one. */
  readonly uiListen?: string;
  readonly createdAt: string;
  readonly fabric: string;
  nextIndex: number;
  readonly nodes: Record<string, LabNode>;
  readonly pods: Record<string, LabPod>;
  placement: Record<string, string>;
  controllerPid?: number;
}

export function newLabId(): string {
  return randomBytes(4).toString('hex');
}

export const netnsPrefix = (id: string) => `weir-${id}-`;

export async function readState(labDir: string): Promise<LabState | undefined> {
  let text: string;
  try {
    text = await readFile(join(labDir, STATE_FILE), 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new UnavailableError(`cannot read the lab's state ${join(labDir, STATE_FILE)}: ${err}`);
  }
  try {
    const s = JSON.parse(text) as LabState;
    if (s.version !== 1 || typeof s.id !== 'string' || !/^[0-9a-f]{8}$/.test(s.id))
      throw new InternalError('not a lab state record of version 1');
    return s;
  } catch (err) {
    throw new UnavailableError(
      `the lab's state ${join(labDir, STATE_FILE)} is unreadable (${(err as Error).message}); weirctl lab down removes the lab by its names`,
    );
  }
}

export async function saveState(labDir: string, state: LabState): Promise<void> {
  const path = join(labDir, STATE_FILE);
  await writeFile(`${path}.tmp`, `${JSON.stringify(state, null, 2)}\n`, { mode: 0o600 });
  await rename(`${path}.tmp`, path);
}
