/**
 * What the lab's tests and benchmarks share: writing manifests into the
 * directory a lab watches, the reason a lab cannot run here, and long-lived
 * connections between pods (an echo server in one pod netns, a client in
 * another that keeps one TCP connection open and says whether each line
 * still comes back).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { agentDatapaths, labUnsupported } from '../cli/lab.js';
import type { Raw } from './cluster.js';

/**
 * Writes objects as one multi-document YAML file (whole, by rename: the lab
 * never reads half); no objects removes the file (an empty file is not a
 * deletion: the controller keeps what the file held last).
 */
export async function writeManifests(
  dir: string,
  file: string,
  objects: readonly Raw[],
): Promise<void> {
  if (objects.length === 0) {
    await rm(join(dir, file), { force: true });
    return;
  }
  const text = objects.map((o) => stringify(o)).join('---\n');
  await writeFile(join(dir, `.${file}.tmp`), text);
  await rename(join(dir, `.${file}.tmp`), join(dir, file));
}

/** Why the lab cannot run here (not root, no iproute2), or undefined. */
export async function labSkip(): Promise<string | undefined> {
  const why = await labUnsupported();
  return why === undefined ? undefined : `${why}; CI runs these as root`;
}

/** Why enforcement cannot be observed here (no lab, or an agent without the kernel datapath), or undefined. */
export async function enforcementSkip(): Promise<string | undefined> {
  const why = await labSkip();
  if (why !== undefined) return why;
  return (await agentDatapaths()).nftables
    ? undefined
    : 'weir-agent has no kernel datapath (--datapath nftables) in this build: the lab cannot enforce';
}

const ECHO_SERVER = `
const net = require('node:net');
const s = net.createServer((c) => { c.on('error', () => c.destroy()); c.pipe(c); });
s.listen({ host: '::', port: Number(process.argv[1]), ipv6Only: false }, () => process.stdout.write('ready\\n'));
process.stdin.on('end', () => process.exit(0));
process.stdin.resume();
`;

const CLIENT = `
const net = require('node:net');
const c = net.connect({ host: process.argv[1], port: Number(process.argv[2]) });
c.on('connect', () => process.stdout.write('connected\\n'));
c.on('data', (b) => process.stdout.write('echo ' + b.toString()));
c.on('error', (e) => process.stdout.write('error ' + (e.code || e.message) + '\\n'));
c.on('close', () => process.stdout.write('closed\\n'));
require('node:readline').createInterface({ input: process.stdin }).on('line', (l) => c.write(l + '\\n'));
process.stdin.on('end', () => process.exit(0));
`;

function inNetns(netns: string, script: string, args: string[]): ChildProcess {
  return spawn('ip', ['netns', 'exec', netns, process.execPath, '-e', script, ...args], {
    stdio: ['pipe', 'pipe', 'inherit'],
  });
}

function waitFor(
  child: ChildProcess,
  seen: () => string,
  pattern: RegExp,
  ms: number,
): Promise<boolean> {
  return new Promise((resolve) => {
    const check = () => {
      if (!pattern.test(seen())) return;
      clearTimeout(t);
      child.stdout!.off('data', check);
      resolve(true);
    };
    const t = setTimeout(() => {
      child.stdout!.off('data', check);
      resolve(false);
    }, ms);
    child.stdout!.on('data', check);
    check();
  });
}

export interface EchoServer {
  stop(): void;
}

export async function echoServer(netns: string, port: number): Promise<EchoServer> {
  const child = inNetns(netns, ECHO_SERVER, [String(port)]);
  let out = '';
  child.stdout!.on('data', (b: Buffer) => (out += b.toString()));
  if (!(await waitFor(child, () => out, /ready/, 20_000)))
    throw new Error(`the echo server in ${netns} did not start`);
  return { stop: () => child.stdin!.end() };
}

/** One TCP connection kept open from a pod netns; `say` is whether a line still makes the round trip. */
export interface Connection {
  say(line: string, ms?: number): Promise<boolean>;
  close(): void;
}

export async function connect(netns: string, ip: string, port: number): Promise<Connection> {
  const child = inNetns(netns, CLIENT, [ip, String(port)]);
  let out = '';
  child.stdout!.on('data', (b: Buffer) => (out += b.toString()));
  if (!(await waitFor(child, () => out, /connected/, 20_000))) {
    child.stdin!.end();
    throw new Error(`no connection from ${netns} to ${ip}:${port}: ${out.trim()}`);
  }
  return {
    say: async (line, ms = 3_000) => {
      child.stdin!.write(`${line}\n`);
      const escaped = line.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
      return waitFor(child, () => out, new RegExp(`echo ${escaped}\\n`), ms);
    },
    close: () => child.stdin!.end(),
  };
}
