/**
 * Adversarial input, generated (fast-check), thrown at the controller and
 * the agent: malformed and hostile policies, manifest files, agent messages
 * (as decoded fields and as raw bytes at the real servers), state files and
 * NATS payloads. Each property: no crash (nothing throws but the error
 * table's ValidationError), a rejection names the object and the field and
 * stays short, and nothing else is disturbed (the valid policy stays in
 * force, a real agent still syncs). Run counts are modest: the suite runs
 * in CI on every change.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import fc from 'fast-check';
import { checkAck, checkHello, checkNack } from '../../controller/distribute/admission.js';
import { readKubeObject } from '../../controller/kube/objects.js';
import { ClusterModel } from '../../controller/model/cluster-model.js';
import { readManifestText } from '../../controller/sources/manifests.js';
import {
  STATE_FILE,
  checkControllerState,
  loadControllerState,
} from '../../controller/store/state-file.js';
import { ValidationError, WeirError } from '../../shared/errors.js';
import { channelOptions, weirProto } from '../../shared/grpc/proto.js';
import { FIELD_LIMITS } from '../../shared/limits.js';
import { silentLogger } from '../../shared/log.js';
import {
  decodeSpanMessage,
  decodeUpdate,
  encodeManifestBody,
  encodeSpanMessage,
} from '../../shared/nats/codec.js';
import { ChecksummedFile } from '../../shared/state/checksummed-file.js';
import { NodeAgent } from '../../vrouter-agent/agent.js';
import { SpanState } from '../../vrouter-agent/store/span-state.js';
import { namespace, networkPolicy, pod } from '../../testing/cluster.js';
import { eventually } from '../support/processes.js';
import { type ControllerRig, startController } from './support.js';

const RUNS = { numRuns: 150, seed: 12 } as const;
const FEW = { numRuns: 25, seed: 12 } as const;

/** Any JSON-ish value, with long strings and deep nesting among them. */
const hostileValue = fc.letrec((tie) => ({
  value: fc.oneof(
    { depthSize: 'small' },
    fc.string(),
    fc.string({ minLength: 300, maxLength: 5_000 }),
    fc.integer(),
    fc.double(),
    fc.boolean(),
    fc.constant(null),
    fc.constant(undefined),
    fc.array(tie('value'), { maxLength: 4 }),
    fc.dictionary(fc.string({ maxLength: 8 }), tie('value'), { maxKeys: 4 }),
  ),
})).value;

/** A value or something near it: the field's legitimate shape, then broken. */
const nearString = (valid: string) =>
  fc.oneof(
    fc.constant(valid),
    fc.string({ maxLength: 40 }),
    fc.string({ minLength: 254, maxLength: 3_000 }),
    fc.constant(valid.toUpperCase()),
    fc.constant(`${valid}\u0000`),
    hostileValue,
  );

const problemsAreNamed = (
  issues: ReadonlyArray<{ object?: string; field?: string; message: string }>,
) => {
  assert.ok(issues.length > 0);
  for (const i of issues) {
    assert.ok(i.object !== undefined && i.object !== '', 'names the object');
    assert.ok(i.field !== undefined && i.field !== '', 'names the field');
    assert.ok(i.message.length <= 200, `a message of ${i.message.length} characters`);
  }
};

describe('agent messages, as decoded fields', () => {
  test('any hello is either admitted with every field within its limit, or refused with each problem naming Hello and its field', () => {
    fc.assert(
      fc.property(
        fc.record({
          node: nearString('node-a'),
          appliedRevision: fc.oneof(fc.constant('12'), fc.string(), hostileValue),
          instance: nearString('3f1c'),
          apiAddress: nearString('10.0.0.1:7444'),
          inForceHash: nearString('abcDEF_-0123456789abcdef'),
        }),
        (raw) => {
          const h = checkHello(raw);
          if (Array.isArray(h)) {
            problemsAreNamed(h);
            for (const i of h) assert.equal(i.object, 'Hello');
          } else {
            assert.match(h.node, /^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/);
            assert.ok(h.node.length <= FIELD_LIMITS.nodeName);
            assert.ok(h.instance.length <= FIELD_LIMITS.instance);
            assert.ok(h.apiAddress.length <= FIELD_LIMITS.apiAddress);
            assert.ok(h.inForceHash.length <= FIELD_LIMITS.hash);
            assert.ok(Number.isSafeInteger(h.revision) && h.revision >= 0);
          }
        },
      ),
      RUNS,
    );
  });

  test('any ACK or NACK is either read with a safe revision and a bounded hash, or refused naming its field', () => {
    fc.assert(
      fc.property(
        fc.record({
          revision: fc.oneof(fc.constant('7'), fc.string(), hostileValue),
          inForceHash: nearString('abc'),
          error: hostileValue,
        }),
        (raw) => {
          for (const r of [checkAck(raw), checkNack(raw)]) {
            if (Array.isArray(r)) problemsAreNamed(r);
            else {
              assert.ok(Number.isSafeInteger(r.revision));
              assert.ok(r.inForceHash.length <= FIELD_LIMITS.hash);
            }
          }
        },
      ),
      RUNS,
    );
  });
});

describe('NATS payloads', () => {
  test('decodeSpanMessage refuses any malformed span message with a ValidationError, never another error', () => {
    const valid = encodeSpanMessage(
      'session-1',
      7,
      encodeManifestBody({
        head: Buffer.from([0x08, 0x03]),
        objects: [{ k: 'o.p.eA', o: 'policy/a', h: 'ab'.repeat(32), s: [4, 5] }],
      }),
    );
    const pointer = encodeSpanMessage('session-1', 8, { k: 'm.node-a', s: [9] });
    // Random bytes, JSON (the old format), and valid messages cut, flipped or extended.
    const mutated = fc
      .tuple(
        fc.constantFrom(valid, pointer),
        fc.nat({ max: 200 }),
        fc.integer({ min: 0, max: 255 }),
        fc.constantFrom('cut', 'flip', 'extend'),
      )
      .map(([m, at, byte, how]) => {
        const i = at % m.length;
        if (how === 'cut') return m.subarray(0, i);
        if (how === 'extend') return Buffer.concat([m, Buffer.from([byte])]);
        const c = Buffer.from(m);
        c[i] = byte;
        return c;
      });
    const bytes = fc.oneof(
      fc.uint8Array({ maxLength: 2_000 }),
      hostileValue.map((v) => Buffer.from(JSON.stringify(v) ?? 'undefined')),
      mutated,
    );
    fc.assert(
      fc.property(bytes, (data) => {
        try {
          decodeSpanMessage(data);
        } catch (err) {
          assert.ok(err instanceof ValidationError, String(err));
          problemsAreNamed(err.issues.map((i) => ({ ...i, object: i.object ?? 'manifest' })));
        }
      }),
      RUNS,
    );
  });

  test('decodeUpdate refuses any malformed head or object bytes with a ValidationError', () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ maxLength: 500 }),
        fc.array(
          fc.record({
            ref: fc.record({ o: fc.string({ maxLength: 20 }), h: fc.string({ maxLength: 20 }) }),
            bytes: fc.uint8Array({ maxLength: 200 }),
          }),
          { maxLength: 4 },
        ),
        (head, objects) => {
          try {
            decodeUpdate(
              Buffer.from(head),
              objects.map((o) => ({ ref: o.ref as never, bytes: Buffer.from(o.bytes) })),
            );
          } catch (err) {
            assert.ok(err instanceof ValidationError, String(err));
          }
        },
      ),
      RUNS,
    );
  });
});

describe('state files', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'weir-prop-state-'));
  });
  after(() => rm(dir, { recursive: true, force: true }));

  test('checkControllerState accepts only in-range state, and says what is wrong with anything else, in a bounded message', () => {
    const nodes = fc.dictionary(
      fc.oneof(fc.constant('node-a'), fc.string({ maxLength: 300 })),
      fc.oneof(
        fc.record({
          revision: fc.oneof(fc.nat(10), hostileValue),
          span: fc.oneof(
            fc.array(
              fc.tuple(
                fc.constantFrom('p:x', 'g:y', 'bad'),
                fc.constantFrom('a'.repeat(43), 'short'),
              ),
              {
                maxLength: 4,
              },
            ),
            hostileValue,
          ),
        }),
        hostileValue,
      ),
      { maxKeys: 4 },
    );
    fc.assert(
      fc.property(
        fc.oneof(fc.record({ revision: fc.oneof(fc.nat(20), hostileValue), nodes }), hostileValue),
        (x) => {
          const r = checkControllerState(x);
          if (typeof r === 'string') assert.ok(r.length < 2_000, `a message of ${r.length}`);
          else for (const n of Object.keys(r.nodes)) assert.ok(n.length <= 253);
        },
      ),
      RUNS,
    );
  });

  test('a controller state file with any body (checksum intact) is used or moved aside and reported, never thrown', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.oneof(
          fc.uint8Array({ maxLength: 300 }).map((b) => Buffer.from(b)),
          hostileValue.map((v) => Buffer.from(JSON.stringify(v) ?? '')),
        ),
        async (body) => {
          const d = await mkdtemp(join(dir, 'c-'));
          await new ChecksummedFile(d, STATE_FILE, 'controller-state', {
            writer: 'weir-controller',
          }).write({ cluster: 'local' }, body);
          const loaded = await loadControllerState(d, 'local');
          if (loaded.rejection !== undefined) assert.equal(loaded.state.revision, 0);
          await rm(d, { recursive: true, force: true });
        },
      ),
      FEW,
    );
  });

  test('an agent span file with any body (checksum intact) is loaded or moved aside and reported, never thrown', async () => {
    await fc.assert(
      fc.asyncProperty(fc.uint8Array({ maxLength: 400 }), async (body) => {
        const d = await mkdtemp(join(dir, 'a-'));
        await new ChecksummedFile(d, SpanState.FILE, 'agent-span', { writer: 'weir-agent' }).write(
          { node: 'n1', cluster: 't' },
          Buffer.from(body),
        );
        const loaded = await SpanState.load(d, 'n1', () => true);
        assert.ok(['loaded', 'rejected'].includes(loaded.type));
        await rm(d, { recursive: true, force: true });
      }),
      FEW,
    );
  });
});

describe('policies and manifests', () => {
  const valid = networkPolicy('a', 'keep', {
    podSelector: { matchLabels: { app: 'db' } },
    ingress: [{ from: [{ podSelector: { matchLabels: { app: 'web' } } }] }],
  });
  /** The valid policy with one field replaced by something hostile. */
  const mutated = fc
    .tuple(
      fc.constantFrom(
        ['spec', 'podSelector'],
        ['spec', 'ingress'],
        ['spec', 'ingress', 0, 'from'],
        ['spec', 'ingress', 0, 'ports'],
        ['spec', 'policyTypes'],
        ['metadata', 'name'],
        ['metadata', 'namespace'],
        ['spec', 'egress'],
      ),
      hostileValue,
    )
    .map(([path, v]) => {
      const o = structuredClone(valid) as Record<string, unknown>;
      let at: Record<string | number, unknown> = o;
      for (const k of path.slice(0, -1)) {
        if (typeof at[k] !== 'object' || at[k] === null) at[k] = {};
        at = at[k] as Record<string | number, unknown>;
      }
      at[path[path.length - 1]!] = v;
      return o;
    });

  test('a hostile NetworkPolicy is rejected naming a field, and the valid policy beside it stays in force', () => {
    fc.assert(
      fc.property(mutated, (raw) => {
        const model = new ClusterModel({ cluster: 't' });
        for (const o of [
          namespace('a'),
          pod('a', 'db', { labels: { app: 'db' }, ips: ['10.0.0.1'] }),
          valid,
        ]) {
          const r = readKubeObject(o);
          if (r.type === 'object') model.apply({ type: 'upsert', object: r.object });
        }
        const kept = JSON.stringify(model.policy('t/np/a/keep'));
        const r = readKubeObject(raw, 'test');
        if (r.type === 'invalid') {
          assert.ok(r.issues.length > 0);
          for (const i of r.issues) {
            assert.ok(i.field !== undefined || i.object !== undefined, 'names where');
            assert.ok(i.message.length < 2_000, `a message of ${i.message.length}`);
          }
          // The refused update of the same policy: its last valid version stays in force.
          model.apply({
            type: 'invalid',
            kind: 'NetworkPolicy',
            namespace: 'a',
            name: 'keep',
            issues: r.issues,
          });
          assert.equal(JSON.stringify(model.policy('t/np/a/keep')), kept);
        }
      }),
      RUNS,
    );
  });

  test('a manifest file of any text is read without throwing: definitions, or problems naming the file', () => {
    const yamlish = fc.oneof(
      fc.string({ maxLength: 400 }),
      hostileValue.map((v) =>
        JSON.stringify({
          apiVersion: 'networking.k8s.io/v1',
          kind: 'NetworkPolicy',
          ...((typeof v === 'object' && v) || {}),
        }),
      ),
      fc.constantFrom('a: &x [*x]', '- - - -\n  ? : :', 'kind: List\nitems: 7', '%YAML 9.9\n---\n'),
    );
    fc.assert(
      fc.property(yamlish, (text) => {
        const r = readManifestText(text, 'hostile.yaml');
        for (const p of r.problems)
          assert.ok(p.message.length < 5_000, `a problem of ${p.message.length}`);
      }),
      RUNS,
    );
  });
});

describe('raw bytes at the real servers', () => {
  let dir: string;
  let rig: ControllerRig;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'weir-prop-servers-'));
    rig = await startController();
  });
  after(async () => {
    await rig.close();
    await rm(dir, { recursive: true, force: true });
  });

  /** A client whose messages are the given bytes, whatever they decode to. */
  const rawClient = (address: string) =>
    new grpc.Client(address, grpc.credentials.createInsecure(), channelOptions(64 * 1024 * 1024));

  test('any bytes as ControlPlane and Operator messages end that call only: the controller keeps serving and a real agent syncs', async () => {
    const client = rawClient(rig.address);
    await fc.assert(
      fc.asyncProperty(fc.uint8Array({ maxLength: 3_000 }), fc.boolean(), async (bytes, stream) => {
        const buf = Buffer.from(bytes);
        if (stream) {
          const call = client.makeBidiStreamRequest(
            '/weir.v1.ControlPlane/Connect',
            (b: Buffer) => b,
            (b: Buffer) => b,
          );
          call.on('data', () => undefined);
          const ended = new Promise<void>((resolve) => {
            call.on('status', () => resolve());
            call.on('error', () => undefined);
          });
          call.write(buf);
          await Promise.race([ended, new Promise((r) => setTimeout(r, 50))]);
          call.cancel();
        } else {
          await new Promise<void>((resolve) =>
            client.makeUnaryRequest(
              '/weir.v1.Operator/ListPolicies',
              (b: Buffer) => b,
              (b: Buffer) => b,
              buf,
              () => resolve(),
            ),
          );
        }
      }),
      FEW,
    );
    client.close();
    const agentDir = await mkdtemp(join(dir, 'agent-'));
    const agent = new NodeAgent({
      node: 'node-a',
      controller: rig.address,
      stateDir: agentDir,
      listen: '127.0.0.1:0',
      log: silentLogger,
      tls: undefined, // plain gRPC: the limits hold for any peer, certificate or not
    });
    await agent.start();
    try {
      await eventually(async () => {
        const a = (await rig.status()).agents.find((x) => x.node === 'node-a');
        return a?.inSync ? true : undefined;
      }, 'node-a in sync');
    } finally {
      await agent[Symbol.asyncDispose]();
    }
  });

  test('any bytes as an agent API request are refused or answered: the agent keeps enforcing and answering', async () => {
    const agentDir = await mkdtemp(join(dir, 'agent-api-'));
    const agent = new NodeAgent({
      node: 'node-b',
      controller: rig.address,
      stateDir: agentDir,
      listen: '127.0.0.1:0',
      log: silentLogger,
      tls: undefined, // plain gRPC: the limits hold for any peer, certificate or not
    });
    await agent.start();
    const client = rawClient(`127.0.0.1:${agent.port}`);
    try {
      await fc.assert(
        fc.asyncProperty(
          fc.uint8Array({ maxLength: 3_000 }),
          fc.constantFrom(
            '/weir.v1.FlowIntrospect/ListFlows',
            '/weir.v1.FlowIntrospect/GetFlow',
            '/weir.v1.Agent/Evaluate',
            '/weir.v1.Agent/GetAgentStatus',
          ),
          async (bytes, method) => {
            const err = await new Promise<grpc.ServiceError | null>((resolve) =>
              client.makeUnaryRequest(
                method,
                (b: Buffer) => b,
                (b: Buffer) => b,
                Buffer.from(bytes),
                (e) => resolve(e),
              ),
            );
            if (err !== null)
              assert.ok(
                [
                  grpc.status.INVALID_ARGUMENT,
                  grpc.status.NOT_FOUND,
                  grpc.status.INTERNAL,
                  grpc.status.RESOURCE_EXHAUSTED,
                ].includes(err.code),
                `${method}: ${err.code} ${err.details}`,
              );
          },
        ),
        FEW,
      );
      const { proto } = weirProto();
      const api = new proto.weir.v1.Agent(
        `127.0.0.1:${agent.port}`,
        grpc.credentials.createInsecure(),
        channelOptions(1024 * 1024),
      );
      const status = await new Promise<{ node: string }>((resolve, reject) =>
        api.GetAgentStatus({}, (e, r) => (e ? reject(e) : resolve(r as { node: string }))),
      );
      api.close();
      assert.equal(status.node, 'node-b');
    } finally {
      client.close();
      await agent[Symbol.asyncDispose]();
    }
  });
});

// A WeirError other than ValidationError from a parser would be a misfiled defect.
void WeirError;
