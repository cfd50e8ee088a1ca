/**
 * The node's netfilter program for the kernel datapath: one `inet weir`
 * nftables table, installed and changed in whole transactions (`nft -f`),
 * plus, where the kernel lacks the nft `queue` statement, one xtables
 * NFQUEUE rule per family (iptables-nft) that the table hands packets to.
 *
 *   forward hook, priority -5 (before filter)
 *     ct state established,related accept        fast path: conntrack carries the flow
 *     ip/ip6 saddr|daddr in @pods4/@pods6 → pod   only traffic of local pods is Weir's
 *   input hook, priority -5 (before filter)
 *     ct state established,related accept        the same fast path
 *     iif lo accept                               the node talking to itself
 *     ip/ip6 saddr in @pods4/@pods6 → pod         a local pod's egress to the node itself
 *   pod
 *     ct state invalid drop
 *     ct mark tagged "decided by Weir" accept    the flow's later NEW packets (UDP before a reply, SYN retransmits)
 *     ct state new, TCP without a lone SYN: drop  no mid-stream pickup: a connection conntrack forgot
 *                                                (deleted by a policy change) cannot come back reversed
 *     ct state new → queue N [bypass]            nft queue statement, or: set mark bit 30, and the
 *                                                xtables rule `-m mark --mark 0x40000000/0xc0000000
 *                                                -j NFQUEUE --queue-num N [--queue-bypass]` in
 *                                                ip/ip6 filter FORWARD and INPUT (priority 0) queues it
 *   forward hook, priority +10 (stamp); input hook, priority +10 (stamp_input)
 *     packet mark tagged "decided by Weir" → ct mark set meta mark
 *
 * Priorities: -5 runs after conntrack has attached the packet's connection
 * (prerouting -200) and before iptables-nft's filter FORWARD/INPUT (0), where
 * the fallback's NFQUEUE rule sits; the stamps run at +10, after the queue's
 * verdict (a reinjected packet resumes at the hook's next entry) and before
 * conntrack confirms the connection (INT_MAX), so the mark is the new
 * connection's from its first packet on.
 *
 * The agent's verdict on a queued packet is NF_ACCEPT with the packet mark
 * of native/src/nfqueue_verdict.h (0b10 in bits 31..30, the egress and
 * ingress rule codes below), which the stamp chain copies into the
 * conntrack mark: the kernel's connection names the rules that admitted it.
 * Weir owns the packet mark of the first packet of every local pod's flow
 * and the conntrack mark of those flows.
 *
 * Traffic between a pod and its own node. A pod's egress to an address of
 * the node it runs on goes through the input hook, and is queued and decided
 * like any other first packet: the one evaluator (shared/policy/
 * rule-tables.ts) allows it when a NetworkPolicy isolates the pod (the
 * "traffic to and from the node" exemption), and otherwise lets the Admin
 * tier, the Baseline tier and the default decide it, so an Admin `nodes` or
 * `networks` Deny (or a Baseline one for a pod no NetworkPolicy isolates)
 * is enforced here too. The exemption covers the addresses the Node object
 * lists (Endpoint.nodeAddresses); a node-local address it does not list
 * (a 169.254.x link-local DNS cache, a node's secondary address) is decided
 * as any other address: a pod isolated for egress reaches it only when a
 * rule admits it. The node's own connections into its pods (kubelet probes)
 * leave through output and are not queued: their replies are established;
 * their packets to the pod, when routed, cross no hook Weir programs.
 * Loopback and non-pod sources on input are not touched.
 *
 * Fail mode. `open`: the queue has bypass (and the queue's fail-open flag):
 * while no agent binds the queue (crashed, restarting) new flows pass
 * unchecked. `closed`: they are dropped until an agent decides them.
 * Established connections survive either way: the table stays in the kernel
 * when the agent dies, and (re)installing it is one transaction that does
 * not touch conntrack.
 *
 * Pod addresses are set elements changed incrementally, each change one
 * transaction: a pod arriving or leaving never rewrites the chains.
 */
import { execFile } from 'node:child_process';
import { access, writeFile } from 'node:fs/promises';
import { isIP } from 'node:net';
import { InternalError, UnavailableError, ValidationError } from '../../shared/errors.js';
import type { Logger } from '../../shared/log.js';

/** How first packets reach the queue. */
export type QueueMethod = 'nft-queue' | 'xtables-nfqueue';

export type FailMode = 'open' | 'closed';

/** Marks (native/src/nfqueue_verdict.h is the other half of this contract). */
export const MARK_TAG_MASK = 0xc000_0000;
export const MARK_DECIDED = 0x8000_0000;
export const MARK_QUEUE = 0x4000_0000;

/** Runs a program with stdin; resolves stdout, rejects with its stderr. Replaceable for tests. */
export type CommandRunner = (
  file: string,
  args: readonly string[],
  stdin?: string,
) => Promise<string>;

export const runCommand: CommandRunner = (file, args, stdin) =>
  new Promise((resolve, reject) => {
    const child = execFile(
      file,
      [...args],
      { timeout: 15_000, maxBuffer: 16 << 20 },
      (err, stdout, stderr) => {
        if (err) {
          const detail = String(stderr).trim() || err.message;
          reject(new UnavailableError(`${file} ${args.join(' ')}: ${detail}`, { cause: err }));
        } else resolve(String(stdout));
      },
    );
    // A program that exits without reading its stdin must not crash the agent with EPIPE.
    child.stdin?.on('error', () => undefined);
    child.stdin?.end(stdin ?? '');
  });

export interface KernelRulesetOptions {
  /** The NFQUEUE number (0..65535). */
  readonly queue: number;
  readonly failMode: FailMode;
  readonly log: Logger;
  /** Table name (default 'weir'): letters, digits, '_'. */
  readonly table?: string;
  readonly run?: CommandRunner;
  /** The iptables programs of the fallback (default iptables-nft / ip6tables-nft when present). */
  readonly iptables?: { readonly v4: string; readonly v6: string };
}

/** The ip/ip6 filter chains of the fallback's NFQUEUE rule: the hooks the table queues from. */
const XTABLES_CHAINS = ['FORWARD', 'INPUT'] as const;
type XtablesChain = (typeof XTABLES_CHAINS)[number];

const TABLE_NAME = /^[A-Za-z][A-Za-z0-9_]{0,30}$/;

/** Finds how this kernel can queue: one transaction adds and deletes a probe table that uses `queue`; nothing is left in force. */
export async function detectQueueMethod(
  run: CommandRunner = runCommand,
): Promise<{ method: QueueMethod; reason: string }> {
  const probe = `weir_probe_${process.pid}`;
  const text = [
    `add table inet ${probe}`,
    `add chain inet ${probe} c { type filter hook forward priority 0; policy accept; }`,
    `add rule inet ${probe} c queue num 65535 bypass`,
    `delete table inet ${probe}`,
    '',
  ].join('\n');
  try {
    await run('nft', ['-f', '-'], text);
    return { method: 'nft-queue', reason: 'the kernel has the nft queue statement' };
  } catch (err) {
    const message = (err as Error).message;
    const line = message.split('\n').find((l) => /Error:/.test(l)) ?? message;
    const why = line.slice(Math.max(0, line.indexOf('Error:'))).split(';')[0]!;
    return {
      method: 'xtables-nfqueue',
      reason: `no nft queue statement (${why.trim().slice(0, 160)}): xtables NFQUEUE target through iptables-nft`,
    };
  }
}

/** Splits addresses by family, rejecting what is not one. */
function byFamily(addresses: Iterable<string>): { v4: string[]; v6: string[] } {
  const v4: string[] = [];
  const v6: string[] = [];
  for (const a of addresses) {
    const f = isIP(a);
    if (f === 4) v4.push(a);
    else if (f === 6) v6.push(a);
    else
      throw new ValidationError([
        { field: 'ips', message: `${JSON.stringify(a)} is not an IP address` },
      ]);
  }
  return { v4, v6 };
}

export class KernelRuleset {
  readonly table: string;
  private readonly run: CommandRunner;
  private readonly log: Logger;
  private readonly pods = new Set<string>();
  /** Every nft/iptables change runs after the previous one. */
  private chain: Promise<unknown> = Promise.resolve();
  private installed = false;
  private method: QueueMethod | undefined;
  private iptables: { v4: string; v6: string } | undefined;

  constructor(private readonly options: KernelRulesetOptions) {
    if (!Number.isInteger(options.queue) || options.queue < 0 || options.queue > 65535)
      throw new ValidationError([
        { field: 'queue', message: `${options.queue} is not a queue number (0..65535)` },
      ]);
    this.table = options.table ?? 'weir';
    if (!TABLE_NAME.test(this.table))
      throw new ValidationError([
        { field: 'table', message: `${JSON.stringify(this.table)} is not a table name` },
      ]);
    this.run = options.run ?? runCommand;
    this.log = options.log;
  }

  get queueMethod(): QueueMethod | undefined {
    return this.method;
  }

  /** The pod addresses in the sets now. */
  addresses(): readonly string[] {
    return [...this.pods];
  }

  private serial<T>(f: () => Promise<T>): Promise<T> {
    const next = this.chain.then(f, f);
    this.chain = next.catch(() => undefined);
    return next;
  }

  /** The whole table, with the given pod addresses (nft syntax). */
  tableText(method: QueueMethod, pods: Iterable<string>): string {
    const t = this.table;
    const { v4, v6 } = byFamily(pods);
    const elements = (xs: string[]) => (xs.length === 0 ? '' : ` elements = { ${xs.join(', ')} };`);
    const bypass = this.options.failMode === 'open' ? ' bypass' : '';
    const queue =
      method === 'nft-queue'
        ? `ct state new queue num ${this.options.queue}${bypass}`
        : `ct state new meta mark set meta mark & 0x3fffffff | 0x${MARK_QUEUE.toString(16)}`;
    const stamp = `meta mark & 0x${MARK_TAG_MASK.toString(16)} == 0x${MARK_DECIDED.toString(16)} ct mark set meta mark`;
    return [
      `table inet ${t} {}`,
      `delete table inet ${t}`,
      `table inet ${t} {`,
      `  set pods4 { type ipv4_addr;${elements(v4)} }`,
      `  set pods6 { type ipv6_addr;${elements(v6)} }`,
      `  chain forward {`,
      `    type filter hook forward priority -5; policy accept;`,
      `    ct state established,related accept`,
      `    ip saddr @pods4 jump pod`,
      `    ip daddr @pods4 jump pod`,
      `    ip6 saddr @pods6 jump pod`,
      `    ip6 daddr @pods6 jump pod`,
      `  }`,
      `  chain input {`,
      `    type filter hook input priority -5; policy accept;`,
      `    ct state established,related accept`,
      `    iif lo accept`,
      `    ip saddr @pods4 jump pod`,
      `    ip6 saddr @pods6 jump pod`,
      `  }`,
      `  chain pod {`,
      `    ct state invalid drop`,
      `    ct mark & 0x${MARK_TAG_MASK.toString(16)} == 0x${MARK_DECIDED.toString(16)} accept`,
      `    ct state new meta l4proto tcp tcp flags & (fin|syn|rst|ack) != syn drop`,
      `    ${queue}`,
      `  }`,
      `  chain stamp {`,
      `    type filter hook forward priority 10; policy accept;`,
      `    ${stamp}`,
      `  }`,
      `  chain stamp_input {`,
      `    type filter hook input priority 10; policy accept;`,
      `    ${stamp}`,
      `  }`,
      `}`,
      '',
    ].join('\n');
  }

  /** The xtables rule of the fallback (arguments after -I/-C/-D CHAIN). */
  private xtablesRule(): string[] {
    return [
      '-m',
      'mark',
      '--mark',
      `0x${MARK_QUEUE.toString(16)}/0x${MARK_TAG_MASK.toString(16)}`,
      '-m',
      'comment',
      '--comment',
      `${this.table}-queue`,
      '-j',
      'NFQUEUE',
      '--queue-num',
      String(this.options.queue),
      ...(this.options.failMode === 'open' ? ['--queue-bypass'] : []),
    ];
  }

  private async iptablesPrograms(): Promise<{ v4: string; v6: string }> {
    if (this.options.iptables) return this.options.iptables;
    const exists = async (p: string) =>
      access(p).then(
        () => true,
        () => false,
      );
    const v4 = (await exists('/usr/sbin/iptables-nft')) ? 'iptables-nft' : 'iptables';
    const v6 = (await exists('/usr/sbin/ip6tables-nft')) ? 'ip6tables-nft' : 'ip6tables';
    return { v4, v6 };
  }

  /**
   * Puts the table in force with `pods` as the pod sets, in one transaction
   * that replaces whatever table of this name was there (a previous agent's:
   * conntrack is not touched, so established connections carry on), then
   * makes sure the fallback's xtables rules are exactly this agent's.
   */
  install(method: QueueMethod, pods: Iterable<string>): Promise<void> {
    const list = [...new Set(pods)];
    return this.serial(async () => {
      const text = this.tableText(method, list);
      await this.run('nft', ['-f', '-'], text);
      this.method = method;
      this.pods.clear();
      for (const p of list) this.pods.add(p);
      this.installed = true;
      if (method === 'xtables-nfqueue') await this.installXtables();
      else await this.removeXtables();
      this.log.info(
        {
          table: this.table,
          queueMethod: method,
          failMode: this.options.failMode,
          pods: list.length,
        },
        'netfilter ruleset installed',
      );
    });
  }

  private async installXtables(): Promise<void> {
    this.iptables ??= await this.iptablesPrograms();
    const want = this.xtablesRule();
    for (const prog of [this.iptables.v4, this.iptables.v6])
      for (const chain of XTABLES_CHAINS) {
        const present = await this.run(prog, ['-C', chain, ...want]).then(
          () => true,
          () => false,
        );
        if (!present) await this.run(prog, ['-I', chain, '1', ...want]);
        await this.removeStaleXtables(prog, chain, want);
      }
  }

  /** Deletes this table's xtables rules in `chain` other than `keep` (another queue number or fail mode). */
  private async removeStaleXtables(
    prog: string,
    chain: XtablesChain,
    keep: readonly string[] | undefined,
  ): Promise<void> {
    const listing = await this.run(prog, ['-S', chain]).catch(() => '');
    const keepText = keep === undefined ? undefined : keep.join(' ');
    const head = `-A ${chain} `;
    for (const line of listing.split('\n')) {
      if (!line.startsWith(head) || !line.includes(`--comment ${this.table}-queue`)) continue;
      const args = line.slice(head.length).trim();
      if (keepText !== undefined && sameRule(args, keepText)) continue;
      await this.run(prog, ['-D', chain, ...args.split(/\s+/)]);
    }
  }

  private async removeXtables(): Promise<void> {
    this.iptables ??= await this.iptablesPrograms();
    for (const prog of [this.iptables.v4, this.iptables.v6])
      for (const chain of XTABLES_CHAINS) await this.removeStaleXtables(prog, chain, undefined);
  }

  /** The pod addresses in the kernel's sets now (a previous agent's table); empty when there is no table. */
  existingPods(): Promise<string[]> {
    return this.serial(async () => {
      const out: string[] = [];
      for (const set of ['pods4', 'pods6']) {
        const text = await this.run('nft', ['-j', 'list', 'set', 'inet', this.table, set]).catch(
          () => '',
        );
        if (text === '') continue;
        const parsed = JSON.parse(text) as { nftables?: Array<{ set?: { elem?: unknown[] } }> };
        for (const item of parsed.nftables ?? [])
          for (const e of item.set?.elem ?? [])
            if (typeof e === 'string' && isIP(e) !== 0) out.push(e);
      }
      return out;
    });
  }

  /** Adds and removes pod addresses in one transaction (no-op when nothing changes). */
  update(add: Iterable<string>, remove: Iterable<string>): Promise<void> {
    return this.serial(async () => {
      if (!this.installed) throw new InternalError('kernel ruleset: update before install');
      const adding = [...new Set(add)].filter((a) => !this.pods.has(a));
      const removing = [...new Set(remove)].filter((a) => this.pods.has(a) && !adding.includes(a));
      if (adding.length === 0 && removing.length === 0) return;
      const a = byFamily(adding);
      const r = byFamily(removing);
      const t = this.table;
      const lines: string[] = [];
      if (a.v4.length) lines.push(`add element inet ${t} pods4 { ${a.v4.join(', ')} }`);
      if (a.v6.length) lines.push(`add element inet ${t} pods6 { ${a.v6.join(', ')} }`);
      if (r.v4.length) lines.push(`delete element inet ${t} pods4 { ${r.v4.join(', ')} }`);
      if (r.v6.length) lines.push(`delete element inet ${t} pods6 { ${r.v6.join(', ')} }`);
      await this.run('nft', ['-f', '-'], `${lines.join('\n')}\n`);
      for (const x of adding) this.pods.add(x);
      for (const x of removing) this.pods.delete(x);
      this.log.debug(
        { added: adding.length, removed: removing.length },
        'pod address sets updated',
      );
    });
  }

  /** Removes the table and the fallback's rules (an orderly shutdown). Idempotent. */
  remove(): Promise<void> {
    return this.serial(async () => {
      await this.run(
        'nft',
        ['-f', '-'],
        `table inet ${this.table} {}\ndelete table inet ${this.table}\n`,
      );
      await this.removeXtables().catch((err: unknown) =>
        this.log.warn({ err }, 'could not remove the xtables NFQUEUE rules'),
      );
      this.installed = false;
      this.pods.clear();
      this.log.info({ table: this.table }, 'netfilter ruleset removed');
    });
  }
}

/** Whether two iptables -S rule texts are the same rule (iptables prints marks and options in its own spelling). */
function sameRule(listed: string, wanted: string): boolean {
  const norm = (s: string) =>
    s
      .replace(/"/g, '')
      .replace(/--mark 0x40000000\/0xc0000000/, 'MARK')
      .replace(/-m mark\s+/, '')
      .replace(/-m comment\s+/, '')
      .split(/\s+/)
      .sort()
      .join(' ');
  return norm(listed) === norm(wanted);
}

/** Turns on conntrack byte and packet counters in this network namespace (flows show them). */
export async function enableConntrackAccounting(): Promise<boolean> {
  try {
    await writeFile('/proc/sys/net/netfilter/nf_conntrack_acct', '1\n');
    return true;
  } catch {
    return false;
  }
}
