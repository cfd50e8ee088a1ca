/**
 * How big the controller's durable state (controller/store/state-file.ts:
 * the revision and, per node, the ACKed span as object key → content hash)
 * is at cluster size: whether it could live in the API server (a ConfigMap,
 * Secret or Lease annotation; etcd refuses objects over 1.5 MiB and
 * ConfigMaps over 1 MiB) so that a leader rescheduled onto another node
 * resumes agents by delta instead of snapshot. The spans are the
 * propagation benchmark's (bench/propagation.ts): N nodes, 10 pods each,
 * and with --providers=P every span also holds P provider endpoints.
 *
 * node --import tsx bench/failover-state.ts [--nodes=100,1000,5000] [--providers=0,3000]
 */
import { ClusterModel } from '../controller/model/cluster-model.js';
import { SpanStore } from '../controller/store/span-store.js';
import { cluster } from './propagation.js';

const arg = (name: string, fallback: string) =>
  (process.argv.find((a) => a.startsWith(`--${name}=`))?.split('=')[1] ?? fallback)
    .split(',')
    .map(Number);

const MiB = 1024 * 1024;
for (const providers of arg('providers', '0,3000'))
  for (const nodes of arg('nodes', providers > 0 ? '50,1000' : '100,1000,5000')) {
    const model = new ClusterModel({ cluster: 'bench' });
    for (const object of cluster(nodes, providers)) model.apply({ type: 'upsert', object });
    const store = new SpanStore(model, { initialRevision: 0 });
    store.commit(Date.now());
    const state = {
      revision: store.revision,
      nodes: Object.fromEntries(
        store.nodes().map((n) => [
          n,
          {
            revision: store.revision,
            span: [...(store.span(n)?.entries ?? new Map())].map(([k, e]) => [k, e.hash]),
          },
        ]),
      ),
    };
    const bytes = Buffer.byteLength(JSON.stringify(state));
    const entries = Object.values(state.nodes).reduce((s, x) => s + x.span.length, 0);
    console.log(
      `${String(nodes).padStart(5)} nodes, ${String(providers).padStart(4)} providers: ` +
        `${(entries / nodes).toFixed(0).padStart(5)} entries/node, state ${(bytes / MiB).toFixed(2).padStart(7)} MiB ` +
        `(${(bytes / nodes / 1024).toFixed(1)} KiB/node; a 1 MiB ConfigMap holds ${Math.floor(MiB / (bytes / nodes))} nodes)`,
    );
  }
