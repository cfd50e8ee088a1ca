/**
 * weirctl: the operator's command line. Wiring only: parse arguments, call
 * the command, map errors to exit statuses (0 ok, 2 bad input, 1 anything
 * else).
 */
import { Command, CommanderError, Option } from 'commander';
import { pathToFileURL } from 'node:url';
import { analyzeMatrix, analyzeObjects, analyzeProbe } from './commands/analyze.js';
import { explainLive, policyList, status } from './commands/live.js';
import { flowsGet, flowsList, flowsStats } from './commands/flows.js';
import { flowsFollowNats } from './commands/flows-nats.js';
import { federationStatus } from './commands/federation.js';
import { natsConfig } from './commands/nats-config.js';
import { natsFederationBucket, natsFederationConfig } from './commands/nats-federation-config.js';
import { version } from './commands/version.js';
import { completion } from './commands/completion.js';
import { labDownCommand, labProbeCommand, labUpCommand } from './commands/lab.js';
import { certsCa, certsLeaf } from './commands/certs.js';
import {
  configGetContexts,
  configSetContext,
  configUseContext,
  configView,
} from './commands/config.js';
import { setConnectionFlags } from './config.js';
import { closeClients, setRequestTimeout } from './clients.js';
import { parseDuration } from '../shared/duration.js';
import { ErrorCode, WeirError } from '../shared/errors.js';
import { EXIT_STATUS, processIo, type Io, UsageError } from './io.js';

const collect = (v: string, prev: string[]) => [...prev, v];

const outputOption = (fallback: string) =>
  new Option('-o, --output <format>', 'table, wide, json, yaml, name or jsonpath=TEMPLATE').default(
    fallback,
  );
const noHeaders = () => new Option('--no-headers', 'table and wide: no header row');
const sortBy = () =>
  new Option('--sort-by <field>', 'sort the list by a field of its items (JSONPath: .node, {.id})');

export async function main(argv: readonly string[], io: Io = processIo): Promise<number> {
  let exit = 0;
  const program = new Command('weirctl')
    .description(
      'Weir: Kubernetes network policy, Contrail-style firewall objects, flows you can explain',
    )
    .exitOverride()
    .configureOutput({ writeOut: io.stdout, writeErr: io.stderr })
    .showHelpAfterError()
    // Credentials for every command that calls a server (cli/config.ts); given anywhere on the line.
    .option('--cert <file>', 'client certificate (env WEIR_CERT)')
    .option('--key <file>', 'its private key (env WEIR_KEY)')
    .option('--ca <file>', 'the CA that signed the servers (env WEIR_CA)')
    .option('--tls-dir <dir>', 'tls.crt, tls.key and ca.crt in one directory')
    .option('--insecure', 'no TLS (only against servers started with --insecure)')
    .option(
      '--context <name>',
      'a context of the config file ($WEIR_CONFIG, default ~/.config/weir/config.yaml)',
    )
    .option(
      '--kube-context <name>',
      'reach the controller through the API server of this kubeconfig context (a port-forward, as kubectl port-forward)',
    )
    .option(
      '--kubeconfig <file>',
      'the kubeconfig for --kube-context (default $KUBECONFIG, ~/.kube/config)',
    )
    .option(
      '--kube-namespace <ns>',
      'the namespace of the weir-controller Service to port-forward to (default weir-system)',
    )
    .option(
      '--request-timeout <duration>',
      'how long one call to a server may take: 30s, 2m, a number of seconds; 0 for no limit (default 5s)',
    )
    .hook('preAction', (_cmd, action) => {
      const g = action.optsWithGlobals();
      if (g.requestTimeout !== undefined) {
        const t = String(g.requestTimeout);
        const ms = /^\d+$/.test(t) ? Number(t) * 1000 : parseDuration(t);
        if (ms === undefined)
          throw new UsageError(
            `--request-timeout must be a duration (5s, 1m, 0 for none), not ${JSON.stringify(t)}`,
          );
        setRequestTimeout(ms);
      }
      setConnectionFlags({
        cert: g.cert,
        key: g.key,
        ca: g.ca,
        tlsDir: g.tlsDir,
        insecure: g.insecure,
        context: g.context,
        kubeconfig: g.kubeconfig,
        kubeContext: g.kubeContext,
        kubeNamespace: g.kubeNamespace,
      });
    });

  const files = () =>
    new Option(
      '-f, --filename <path>',
      'manifest file or directory, - for standard input (repeatable)',
    )
      .argParser(collect)
      .default([]);
  /**
   * `-f` and `--cluster` of one analyze command: each -f belongs to the
   * --cluster before it (`--cluster a -f A --cluster b -f B`), recorded in
   * command-line order as commander parses; with one --cluster (or none),
   * every -f is that cluster's wherever it is.
   */
  const manifestOptions = () => {
    const groups: Array<{ cluster: string; paths: string[] }> = [];
    const loose: string[] = [];
    const files = new Option(
      '-f, --filename <path>',
      "manifest file or directory, - for standard input (repeatable; after a --cluster: that cluster's)",
    )
      .argParser((v: string, prev: string[]) => {
        (groups.at(-1)?.paths ?? loose).push(v);
        return collect(v, prev);
      })
      .default([]);
    const cluster = new Option(
      '--cluster <name>',
      'cluster name used in object ids (default local); repeated as --cluster NAME -f PATH pairs: several clusters of one federation, analysed together',
    ).argParser((v: string, prev: string[] | undefined) => {
      groups.push({ cluster: v, paths: [] });
      return collect(v, prev ?? []);
    });
    return { files, cluster, groups, loose };
  };
  const exitCode = () =>
    new Option(
      '--exit-code',
      'exit 1 when the connection is denied, 0 when allowed (as kubectl auth can-i)',
    );

  const analyze = program
    .command('analyze')
    .description('offline what-if analysis over manifest files');
  const mx = manifestOptions();
  analyze
    .command('matrix')
    .description('reachability of every pod to every pod, per probe')
    .addOption(mx.files)
    .addOption(mx.cluster)
    .addOption(
      new Option(
        '--probe <protocol/port>',
        'probe to evaluate, e.g. TCP/80 (repeatable; default TCP/80)',
      )
        .argParser(collect)
        .default([]),
    )
    .addOption(
      new Option(
        '-n, --namespace <namespace>',
        'only the pods of this namespace, as sources and destinations (repeatable)',
      )
        .argParser(collect)
        .default([]),
    )
    .option('-A, --all-namespaces', 'every namespace (the default)')
    .option(
      '-l, --selector <selector>',
      'only the pods with these labels: app=web,tier in (a,b),!canary',
    )
    .addOption(outputOption('table'))
    .addOption(noHeaders())
    .addOption(sortBy())
    .action(async (opts) => {
      exit = await analyzeMatrix(io, { ...opts, groups: mx.groups, loose: mx.loose });
    });
  const pr = manifestOptions();
  analyze
    .command('probe')
    .description('one connection: the verdict and the tier, policy and rule behind each side')
    .addOption(pr.files)
    .addOption(pr.cluster)
    .option(
      '--from <ns/pod|ip>',
      'source pod or address (with several clusters: cluster/namespace/pod)',
    )
    .option(
      '--to <ns/pod|ip>',
      'destination pod or address (with several clusters: cluster/namespace/pod)',
    )
    .option('--port <port>', 'destination port')
    .addOption(new Option('--protocol <protocol>', 'TCP, UDP or SCTP').default('TCP'))
    .addOption(exitCode())
    .addOption(outputOption('table'))
    .addOption(noHeaders())
    .addOption(sortBy())
    .action(async (opts) => {
      exit = await analyzeProbe(io, { ...opts, groups: pr.groups, loose: pr.loose });
    });
  const ob = manifestOptions();
  analyze
    .command('objects')
    .description('the firewall objects the manifests translate into')
    .addOption(ob.files)
    .addOption(ob.cluster)
    .addOption(outputOption('yaml'))
    .addOption(noHeaders())
    .addOption(sortBy())
    .action(async (opts) => {
      exit = await analyzeObjects(io, { ...opts, groups: ob.groups, loose: ob.loose });
    });

  const controller = () =>
    new Option(
      '--controller <host:port>',
      'the controller (env WEIR_CONTROLLER; default 127.0.0.1:7443)',
    );
  program
    .command('status')
    .description(
      'the controller (source, revision) and every agent (connected, applied revision, lag, last error)',
    )
    .addOption(controller())
    .option(
      '--wait [timeout]',
      'block until every agent proves sync (exit 0) or the timeout passes (exit 1, naming the nodes; default 60s)',
    )
    .option('--strict', 'exit 1 when an agent is disconnected or an object is rejected')
    .addOption(outputOption('table'))
    .addOption(noHeaders())
    .addOption(sortBy())
    .action(async (opts) => {
      exit = await status(io, opts);
    });
  const policy = program
    .command('policy')
    .description('firewall policies as the controller holds them, with where they are enforced');
  policy
    .command('list')
    .description('every policy: rules, selected pods, nodes that applied it, propagation latency')
    .addOption(controller())
    .option(
      '-n, --namespace <ns>',
      "this namespace's NetworkPolicies (ClusterNetworkPolicies only with -A)",
    )
    .option('-A, --all-namespaces', 'every policy (the default)')
    .option(
      '-l, --selector <selector>',
      "policies whose own labels match, as kubectl -l: 'team=web,tier in (a,b),!draft'",
    )
    .addOption(outputOption('table'))
    .addOption(noHeaders())
    .addOption(sortBy())
    .action(async (opts) => {
      exit = await policyList(io, opts);
    });
  policy
    .command('get')
    .argument('<name>', 'namespace/name (or a policy id)')
    .description('one policy: its firewall objects and per-node realization')
    .addOption(controller())
    .addOption(outputOption('yaml'))
    .addOption(noHeaders())
    .addOption(sortBy())
    .action(async (name: string, opts) => {
      exit = await policyList(io, opts, name);
    });
  program
    .command('explain')
    .description(
      'the live verdict for one connection, with the tier, policy and rule behind each side',
    )
    .addOption(controller())
    .option(
      '--agent <node|host:port>',
      'ask an agent instead (a node name, found through the controller, or its API address): the verdict of the tables it enforces now',
    )
    .option('--from <ns/pod|ip>', 'source pod or address')
    .option('--to <ns/pod|ip>', 'destination pod or address')
    .option('--port <port>', 'destination port')
    .addOption(new Option('--protocol <protocol>', 'TCP, UDP or SCTP').default('TCP'))
    .addOption(exitCode())
    .addOption(outputOption('table'))
    .addOption(noHeaders())
    .addOption(sortBy())
    .action(async (opts) => {
      exit = await explainLive(io, opts);
    });

  const node = () =>
    new Option(
      '--node <name|host:port>',
      "the agent: a node name (its address comes from the controller's status) or the agent's API address; without it, every node's flows through the controller",
    );
  const flows = program
    .command('flows')
    .description("an agent's flows, with the pods and the policy and rule behind each verdict")
    .addOption(node())
    .addOption(controller())
    .option('--src <cidr>', 'source address or prefix')
    .option('--dst <cidr>', 'destination address or prefix')
    .option('--port <port>', 'either port')
    .option('--protocol <name|number>', 'tcp, udp, sctp, icmp, icmpv6 or a number')
    .option('--action <action>', 'allow, deny or hold')
    .option(
      '--policy <policy>',
      'a NetworkPolicy (namespace/name) or policy id that decided either direction',
    )
    .option('--rule <rule>', 'a firewall rule id that decided either direction')
    .option('--pod <ns/name>', 'a pod at either end')
    .option('--from-pod <ns/name>', 'the pod that starts the flow (its source)')
    .option('--to-pod <ns/name>', 'the pod the flow goes to (its destination)')
    .option('-n, --namespace <ns>', 'a namespace at either end')
    .option('--from-namespace <ns>', "the source pod's namespace")
    .option('--to-namespace <ns>', "the destination pod's namespace")
    .option('-A, --all-namespaces', 'every namespace (the default)')
    .option(
      '-l, --selector <selector>',
      'a pod at either end with these labels: app=web,tier in (a,b),!canary',
    )
    .option('--verdict <verdict>', 'allowed|forwarded, denied|dropped, or hold (as --action)')
    .option(
      '--tcp-state <state>',
      'syn, established, fin-forward, fin-reverse, closing (either FIN), rst or closed',
    )
    .option('--match <expr>', 'vRouter style: "ip[:port],ip[:port] & proto tcp" (either order)')
    .option('-w, --watch', 'stream flow events as they happen')
    .option('-f, --follow', "with --source nats: follow the whole cluster's flow events")
    .addOption(
      new Option('--source <source>', 'agent (one node, --node) or nats (every node)')
        .choices(['agent', 'nats'])
        .default('agent'),
    )
    .option(
      '--since <duration|time>',
      'flows seen since 10m ago, or since an RFC 3339 time (with --source nats: replay from then)',
    )
    .option('--last <n>', 'the n flows seen most recently')
    .option('--nats <urls>', 'with --source nats: NATS servers, comma-separated (env WEIR_NATS)')
    .option('--nats-user <name>', 'NATS user (env WEIR_NATS_USER)')
    .option('--nats-password-file <file>', 'its password (env WEIR_NATS_PASSWORD)')
    .option('--cluster <name>', 'with --source nats: the cluster (default local)')
    .addOption(new Option('--limit <n>', 'at most this many flows').default('1000'))
    .addOption(outputOption('table'))
    .addOption(noHeaders())
    .addOption(sortBy())
    .action(async (opts, cmd: Command) => {
      // --cert/--key/--ca/--tls-dir/--insecure are the global credentials: also NATS's.
      if (opts.source === 'nats') exit = await flowsFollowNats(io, cmd.optsWithGlobals());
      else if (opts.follow)
        throw new UsageError('--follow reads the NATS flow stream: add --source nats');
      else exit = await flowsList(io, opts);
    });
  flows
    .command('get')
    .argument('<id>', 'the flow id (the ID column)')
    .description('one flow in full')
    .option('--index', 'the argument is a flow table index instead (reused once a flow ends)')
    .addOption(node())
    .addOption(controller())
    .addOption(outputOption('table'))
    .addOption(noHeaders())
    .addOption(sortBy())
    .action(async (index: string, _opts, cmd: Command) => {
      exit = await flowsGet(io, index, cmd.optsWithGlobals());
    });
  flows
    .command('stats')
    .description(
      'flow table and datapath counters: flows, setup rate, holds, drops by reason, evictions, limits',
    )
    .addOption(node())
    .addOption(controller())
    .addOption(outputOption('table'))
    .addOption(noHeaders())
    .addOption(sortBy())
    .action(async (_opts, cmd: Command) => {
      exit = await flowsStats(io, cmd.optsWithGlobals());
    });

  program
    .command('version')
    .description("weirctl's version and the controller's (a warning when they differ)")
    .addOption(controller())
    .option('--client', "only weirctl's version; do not ask the controller")
    .addOption(outputOption('table'))
    .addOption(noHeaders())
    .addOption(sortBy())
    .action(async (opts) => {
      exit = await version(io, opts);
    });
  program
    .command('completion')
    .argument('<shell>', 'bash, zsh or fish')
    .description('shell completion: source <(weirctl completion bash)')
    .action((shell: string) => {
      exit = completion(io, program, shell);
    });

  const federation = program
    .command('federation')
    .description('multi-cluster federation (docs/federation.md)');
  federation
    .command('status')
    .description(
      "every member as this cluster's controller sees it (live or stale, last report, exported counts) and each federated policy's realization per member",
    )
    .addOption(controller())
    .addOption(outputOption('table'))
    .addOption(noHeaders())
    .addOption(sortBy())
    .action(async (opts) => {
      exit = await federationStatus(io, opts);
    });

  const nats = program.command('nats').description('NATS (--transport nats, docs/nats.md)');
  nats
    .command('config')
    .description(
      "write nats-server's authorization (and TLS) configuration: each role of a cluster with exactly its permissions",
    )
    .option('--cluster <name>', "the cluster (as the programs' --cluster; default local)")
    .addOption(
      new Option('--node <name>', 'a node whose agent gets a user (repeatable)')
        .argParser(collect)
        .default([]),
    )
    .option('--nodes-file <file>', 'node names, one a line (# comments)')
    .addOption(
      new Option(
        '--reader <who>',
        'a flow reader (weirctl flows --source nats): ROLE/NAME of an operator certificate with --auth tls, a user name with --auth password (repeatable)',
      )
        .argParser(collect)
        .default([]),
    )
    .addOption(
      new Option(
        '--auth <how>',
        'tls: certificate identities (verify_and_map); password: users with passwords',
      )
        .choices(['tls', 'password'])
        .default('tls'),
    )
    .option(
      '--server-tls-dir <dir>',
      'where the servers find their tls.crt, tls.key, ca.crt (default /etc/nats/tls with --auth tls)',
    )
    .option(
      '--federation <name>',
      "the federation this cluster is a member of: its controller's user may reach the hub through this server (docs/federation-nats.md)",
    )
    .requiredOption('--out <dir>', 'write the files here')
    .action(async (opts) => {
      exit = await natsConfig(io, opts);
    });
  nats
    .command('federation-config')
    .description(
      "write a federation's hub configuration (leafnode port, one user per member with exactly its permissions) and each member's leafnode remote (docs/federation-nats.md)",
    )
    .requiredOption('--federation <name>', "the federation (as the controllers' --federation)")
    .addOption(
      new Option('--member <cluster>', 'a member cluster (repeatable)')
        .argParser(collect)
        .default([]),
    )
    .option(
      '--hub-url <url>',
      "where members reach the hub's leafnode port (default nats://hub:7422)",
    )
    .option('--leaf-listen <addr>', "the hub's leafnode listen address (default 0.0.0.0:7422)")
    .option('--max-bytes <n>', 'largest size of the bucket in bytes (default 256 MiB)')
    .requiredOption('--out <dir>', 'write the files here')
    .action(async (opts) => {
      exit = await natsFederationConfig(io, opts);
    });
  nats
    .command('federation-bucket')
    .description("create a federation's bucket at the hub (as the hub operator's user)")
    .requiredOption('--federation <name>', 'the federation')
    .option('--nats <urls>', "the hub's client URL(s)", process.env.WEIR_NATS)
    .option(
      '--nats-user <name>',
      'the hub operator user (weir-fed-admin)',
      process.env.WEIR_NATS_USER,
    )
    .option('--nats-password-file <file>', "the user's password, first line of the file")
    .action(async (opts) => {
      exit = await natsFederationBucket(io, opts);
    });

  const labName = () =>
    new Option(
      '--lab <name>',
      'which lab (env WEIR_LAB; default "default"); its directory is $WEIR_LAB_ROOT/NAME, default /run/weir/lab/NAME',
    ).default(process.env.WEIR_LAB);
  const lab = program
    .command('lab')
    .description(
      'a cluster on one machine from manifests: a netns per node and pod, the real controller and agents (root)',
    );
  lab
    .command('up')
    .description(
      'build the lab from a manifest directory (watched through the lab) and wait until every agent is in sync',
    )
    .addOption(files())
    .addOption(labName())
    .option(
      '--nodes <n>',
      'nodes to make when the manifests define none (pods without spec.nodeName are placed round-robin)',
    )
    .addOption(
      new Option(
        '--datapath <datapath>',
        "the agents' datapath: auto (the kernel one when the agent has it), nftables or userspace",
      ).default('auto'),
    )
    .option(
      '--fail-mode <mode>',
      "the agents' fail mode (open or closed; the agent's default otherwise)",
    )
    .option('--timeout <seconds>', 'how long to wait for sync (default 60)')
    .option(
      '--ui-listen <host:port>',
      "serve the web console on this loopback address (the controller's --ui-listen)",
    )
    .action(async (opts) => {
      exit = await labUpCommand(io, opts);
    });
  lab
    .command('probe')
    .description(
      'bring the lab to the manifests as they are now, then connect every pod to every pod for real',
    )
    .addOption(labName())
    .addOption(
      new Option(
        '--probe <protocol/port>',
        'probe to run, e.g. TCP/80 (repeatable; default TCP/80)',
      )
        .argParser(collect)
        .default([]),
    )
    .addOption(
      new Option('-o, --output <format>', 'table or json (as weirctl analyze matrix)').default(
        'table',
      ),
    )
    .option(
      '--compare',
      'also run the analysis on the manifests and print every difference (exit 1 if any)',
    )
    .option('--timeout <seconds>', 'how long to wait for sync (default 60)')
    .option(
      '--probe-timeout <seconds>',
      'how long one connection may take before it counts as denied (default 2)',
    )
    .action(async (opts) => {
      exit = await labProbeCommand(io, opts);
    });
  lab
    .command('down')
    .description('remove everything the lab made, also what a crashed run left behind')
    .addOption(labName())
    .action(async (opts) => {
      exit = await labDownCommand(io, opts);
    });

  const config = program
    .command('config')
    .description("weirctl's contexts (controller and credentials), kubeconfig-style");
  config
    .command('view')
    .description('the config file')
    .action(async () => {
      exit = await configView(io);
    });
  config
    .command('get-contexts')
    .description('every context; * marks the current one')
    .addOption(outputOption('table'))
    .addOption(noHeaders())
    .addOption(sortBy())
    .action(async (opts) => {
      exit = await configGetContexts(io, opts);
    });
  config
    .command('use-context')
    .argument('<name>')
    .description('make a context the current one')
    .action(async (name: string) => {
      exit = await configUseContext(io, name);
    });
  config
    .command('set-context')
    .argument('<name>')
    .description('create or update a context from --controller and the credential flags')
    .addOption(controller())
    .option('--use', 'make it the current context')
    .action(async (name: string, _opts, cmd: Command) => {
      exit = await configSetContext(io, name, cmd.optsWithGlobals());
    });

  const certs = program
    .command('certs')
    .description(
      'a CA and certificates for the controller, agents and operators (tls.crt, tls.key, ca.crt in a directory)',
    );
  const caDir = () =>
    new Option('--ca-dir <dir>', 'the CA made by weirctl certs ca').default('weir-ca');
  const leafOptions = (c: Command) =>
    c
      .addOption(caDir())
      .option('--out <dir>', 'where to write tls.crt, tls.key, ca.crt')
      .option('--days <n>', 'validity in days (default 365)')
      .addOption(
        new Option('--dns <name>', 'also a DNS name (repeatable)').argParser(collect).default([]),
      );
  certs
    .command('ca')
    .description('a new CA: ca.crt and ca.key')
    .addOption(new Option('--out <dir>', 'where to write it').default('weir-ca'))
    .option('--days <n>', 'validity in days (default 3650)')
    .action(async (opts) => {
      exit = await certsCa(io, opts);
    });
  leafOptions(
    certs
      .command('node')
      .argument('<name>', 'the node')
      .description('an agent certificate naming its node: spiffe://weir/node/NAME'),
  ).action(async (name: string, opts) => {
    exit = await certsLeaf(io, 'node', name, opts);
  });
  leafOptions(
    certs
      .command('pod')
      .argument('<name>', 'the agent pod')
      .option('--namespace <ns>', "the agent pod's namespace (default weir-system)")
      .description(
        'an agent certificate naming its pod: spiffe://weir/ns/NS/pod/NAME (the controller finds its node)',
      ),
  ).action(async (name: string, opts) => {
    exit = await certsLeaf(io, 'pod', name, opts);
  });
  leafOptions(
    certs.command('controller').description('the controller certificate: spiffe://weir/controller'),
  ).action(async (opts) => {
    exit = await certsLeaf(io, 'controller', undefined, opts);
  });
  leafOptions(
    certs
      .command('operator')
      .argument('<name>', 'who (a person or a tool)')
      .addOption(
        new Option('--role <role>', 'admin or read-only')
          .choices(['admin', 'read-only'])
          .default('read-only'),
      )
      .description('an operator certificate for weirctl: spiffe://weir/operator/ROLE/NAME'),
  ).action(async (name: string, opts) => {
    exit = await certsLeaf(io, 'operator', name, opts);
  });

  try {
    await program.parseAsync([...argv], { from: 'user' });
    return exit;
  } catch (err) {
    if (err instanceof CommanderError) {
      // Help and version are successes; everything else is a usage error.
      return err.exitCode === 0 ? 0 : 2;
    }
    // The error table decides the exit status. One line for a person; an
    // error outside the table is a bug in weirctl: its stack with WEIR_DEBUG=1.
    if (err instanceof WeirError) {
      io.stderr(`error: ${err.message.split('\n').join('\n  ')}\n`);
      return EXIT_STATUS[err.code];
    }
    if (process.env.WEIR_DEBUG === '1')
      io.stderr(`error: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    else
      io.stderr(
        `error: ${err instanceof Error ? err.message.split('\n')[0] : String(err)} (a bug in weirctl: run with WEIR_DEBUG=1 for the stack and report it)\n`,
      );
    return EXIT_STATUS[ErrorCode.Internal];
  } finally {
    await closeClients();
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  process.exitCode = await main(process.argv.slice(2));
}
