/**
 * The controller's persisted state: read back exactly when it is intact,
 * the cluster's own and in range; otherwise moved aside, and the controller
 * starts fresh without ever issuing a revision an agent already holds.
 */
import assert from 'node:assert/strict';
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Distributor } from '../../controller/distribute/distributor.js';
import { ClusterModel } from '../../controller/model/cluster-model.js';
import { readKubeObject } from '../../controller/kube/objects.js';
import { SpanStore } from '../../controller/store/span-store.js';
import {
  type ControllerState,
  LEGACY_STATE_FILE,
  STATE_FILE,
  loadControllerState,
  saveControllerState,
} from '../../controller/store/state-file.js';
import type { SpanUpdate } from '../../shared/generated/weir/v1/index.js';
import { silentLogger } from '../../shared/log.js';
import { ChecksummedFile } from '../../shared/state/checksummed-file.js';
import { namespace, networkPolicy, pod, type Raw } from '../../testing/cluster.js';

const HASH = 'Zm9vYmFyYmF6cXV4cXV1eHh5eg';
const GOOD: ControllerState = {
  revision: 12,
  nodes: {
    'node-a': {
      revision: 12,
      span: [
        ['p:c/np/a/x', HASH],
        ['e:a/web', HASH],
      ],
    },
    'node-b': { revision: 3, span: [] },
  },
};

describe("the controller's state file", () => {
  let root: string;
  let n = 0;
  const fresh = () => join(root, String(n++));
  /** A checksummed file of the right kind and owner holding `content` as is. */
  const sealed = async (content: string) => {
    const dir = fresh();
    await new ChecksummedFile(dir, STATE_FILE, 'controller-state').write({ cluster: 'c' }, content);
    return dir;
  };

  before(async () => {
    root = await mkdtemp(join(tmpdir(), 'weir-controller-state-'));
  });
  after(() => rm(root, { recursive: true, force: true }));

  test('a saved state loads back as it was', async () => {
    const dir = fresh();
    await saveControllerState(dir, 'c', GOOD);
    assert.deepEqual(await loadControllerState(dir, 'c'), { state: GOOD });
  });

  test('no state file is a fresh start, with nothing to report', async () => {
    assert.deepEqual(await loadControllerState(fresh(), 'c'), {
      state: { revision: 0, nodes: {} },
    });
  });

  // Each is checksummed and the cluster's own: only the range checks can catch it.
  const node = (n: unknown) => ({ revision: 5, nodes: { 'node-a': n } });
  const bad: Array<[string, unknown, RegExp]> = [
    [
      'a negative revision',
      { revision: -5, nodes: {} },
      /revision: -5 is not a non-negative safe integer/,
    ],
    ['a fractional revision', { revision: 1.5, nodes: {} }, /revision: 1\.5 is not/],
    ['a revision as a string', { revision: '7', nodes: {} }, /revision: "7" is not/],
    [
      'a revision past the safe integers',
      { revision: 2 ** 53, nodes: {} },
      /is not a non-negative safe integer/,
    ],
    ['no nodes', { revision: 5 }, /nodes: is not an object/],
    ['nodes as a list', { revision: 5, nodes: [] }, /nodes: is not an object/],
    [
      'an agent ahead of the counter',
      node({ revision: 9, span: [] }),
      /\.revision: 9 is ahead of the controller's revision 5/,
    ],
    [
      'an agent with a negative revision',
      node({ revision: -1, span: [] }),
      /\.revision: -1 is not/,
    ],
    ['a span that is not a list', node({ revision: 5, span: {} }), /\.span: is not a list/],
    [
      'a span entry with a key of no kind',
      node({ revision: 5, span: [['x:y', HASH]] }),
      /key "x:y" is not an object key/,
    ],
    [
      'a span entry with a hash of the wrong shape',
      node({ revision: 5, span: [['p:x', 'not a hash!']] }),
      /hash "not a hash!" is not a content hash/,
    ],
    [
      'a span with a key twice',
      node({
        revision: 5,
        span: [
          ['p:x', HASH],
          ['p:x', HASH],
        ],
      }),
      /key p:x appears twice/,
    ],
    [
      'an empty node name',
      { revision: 5, nodes: { '': { revision: 1, span: [] } } },
      /node name of 0 characters/,
    ],
    ['a list instead of an object', [1, 2], /content is not an object/],
  ];
  for (const [what, content, detail] of bad)
    test(`a state file with ${what} is moved aside and the controller starts fresh`, async () => {
      const dir = await sealed(JSON.stringify(content));
      const r = await loadControllerState(dir, 'c');
      assert.deepEqual(r.state, { revision: 0, nodes: {} });
      assert.equal(r.rejection?.reason, 'corrupt');
      assert.match(r.rejection!.detail, detail);
      assert.deepEqual(await readdir(dir), [r.rejection!.movedTo.slice(dir.length + 1)]);
    });

  test('a state file that is not JSON inside its envelope is moved aside as corrupt', async () => {
    const r = await loadControllerState(await sealed('{"revision": 3,'), 'c');
    assert.equal(r.rejection?.detail, 'content is not JSON');
  });

  test("another cluster's state file is moved aside as foreign", async () => {
    const dir = fresh();
    await saveControllerState(dir, 'other', GOOD);
    const r = await loadControllerState(dir, 'c');
    assert.deepEqual(r.state, { revision: 0, nodes: {} });
    assert.equal(r.rejection?.reason, 'foreign');
    assert.match(r.rejection!.detail, /written for cluster "other", not "c"/);
  });

  test('a state file an older controller wrote without a checksum is moved aside as unverifiable', async () => {
    const dir = fresh();
    const { mkdir } = await import('node:fs/promises');
    await mkdir(dir);
    await writeFile(join(dir, LEGACY_STATE_FILE), JSON.stringify({ revision: -5, nodes: {} }));
    const r = await loadControllerState(dir, 'c');
    assert.equal(r.rejection?.reason, 'unverifiable');
    assert.match(r.rejection!.movedTo, /controller-state\.json\.unverifiable-\d{8}T/);
  });
});

describe('a controller that starts fresh', () => {
  const cluster: Raw[] = [
    namespace('a'),
    pod('a', 'web', { labels: { app: 'web' }, ips: ['10.0.0.1'], node: 'n1' }),
    networkPolicy('a', 'web', { podSelector: { matchLabels: { app: 'web' } }, ingress: [] }),
  ];
  const setup = () => {
    const model = new ClusterModel({ cluster: 't' });
    const store = new SpanStore(model, { initialRevision: 0 });
    const d = new Distributor(store, { log: silentLogger });
    for (const raw of cluster) {
      const r = readKubeObject(raw);
      if (r.type === 'object') model.apply({ type: 'upsert', object: r.object });
    }
    store.commit(Date.now());
    d.setReady();
    const sent: SpanUpdate[] = [];
    const link = { send: (u: SpanUpdate) => void sent.push(u), close: () => undefined };
    return { model, store, d, sent, link };
  };

  test('sends an agent that holds revision 500 a snapshot above 500, and issues only higher revisions after', () => {
    const { model, store, d, sent, link } = setup();
    assert.equal(store.revision, 1);
    const session = d.hello(
      { node: 'n1', instance: 'agent-1', revision: 500, inForceHash: '', apiAddress: '' },
      link,
    );
    assert.equal(sent.length, 1);
    assert.equal(sent[0]!.snapshot, true);
    assert.ok(Number(sent[0]!.revision) > 500, `snapshot at ${sent[0]!.revision}`);
    session.ack(Number(sent[0]!.revision), store.spanHash('n1'));

    const r = readKubeObject(
      pod('a', 'web', { labels: { app: 'web' }, ips: ['10.0.0.9'], node: 'n1' }),
    );
    if (r.type === 'object') model.apply({ type: 'upsert', object: r.object });
    const c = store.commit(Date.now());
    assert.ok(c !== undefined && c.revision > Number(sent[0]!.revision));
  });

  test('an agent that claims a revision no safe integer can hold moves nothing', () => {
    const { store, d, link } = setup();
    d.hello(
      { node: 'n1', instance: 'agent-1', revision: 2 ** 60, inForceHash: '', apiAddress: '' },
      link,
    );
    assert.equal(store.revision, 1);
  });
});
