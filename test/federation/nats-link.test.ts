/**
 * The federation link over real nats-servers (docs/federation-nats.md): a
 * hub and three member servers as its leaf nodes, configured by what
 * `weirctl nats federation-config` writes, and one link per member, each
 * connected to its own member's server as the controller's is.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { Kvm } from '@nats-io/kv';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import type { EntryRef, FederationLink, LinkEvent } from '../../controller/federation/link.js';
import {
  entryKey,
  openNatsFederationLink,
  parseEntryKey,
} from '../../controller/federation/nats-link.js';
import { rootLogger } from '../../shared/log.js';
import { federationNames } from '../../shared/nats/federation.js';
import { agentUser, natsAuthorization } from '../../shared/nats/permissions.js';
import { type FederationNats, startFederationHub } from '../../testing/nats-server.js';
import { eventually } from '../support/processes.js';

const log = rootLogger({ name: 'test', level: process.env.WEIR_TEST_LOG ?? 'silent' });
const FEDERATION = 'f1';
const MEMBERS = ['a', 'b', 'c'] as const;
type Member = (typeof MEMBERS)[number];
const names = federationNames(FEDERATION);

/** A link and every event it reported, in order. */
class Watched {
  readonly events: LinkEvent[] = [];
  constructor(readonly link: FederationLink) {
    void (async () => {
      for await (const e of link.watch()) this.events.push(e);
    })();
  }
  /** Index of the first event at or after `from` that matches. */
  async next(pred: (e: LinkEvent) => boolean, what: string, from = 0): Promise<number> {
    return eventually(async () => {
      const i = this.events.findIndex((e, j) => j >= from && pred(e));
      return i >= 0 ? i : undefined;
    }, what);
  }
  /** Waits for `connected` then `synced` after `from`; the events between them are the listing. */
  async listing(from = 0): Promise<LinkEvent[]> {
    const c = await this.next((e) => e.type === 'connected', 'connected', from);
    const s = await this.next((e) => e.type === 'synced', 'synced', c);
    return this.events.slice(c + 1, s);
  }
}

const ns = (cluster: string, name: string): EntryRef => ({ kind: 'ns', cluster, name });
const isPut = (ref: EntryRef, value?: unknown) => (e: LinkEvent) =>
  e.type === 'put' &&
  entryKey(e.ref) === entryKey(ref) &&
  (value === undefined || JSON.stringify(e.value) === JSON.stringify(value));

describe('the federation link over a NATS hub and leaf nodes', () => {
  let nats: FederationNats;
  const links = {} as Record<Member, Watched>;
  let admin: NatsConnection;

  const open = (m: Member) =>
    openNatsFederationLink({
      federation: FEDERATION,
      cluster: m,
      endpoint: { servers: [nats.members[m]!.url] },
      log,
      maxEntryBytes: { ep: 1024 },
      probeMs: 500,
      retryMs: 200,
    });
  /** The hub's value of a key, as its operator reads it. */
  const atHub = async (key: string) =>
    (await (await new Kvm(jetstream(admin)).open(names.bucket)).get(key))?.string();

  before(async () => {
    nats = await startFederationHub({ federation: FEDERATION, members: MEMBERS });
    admin = await connect({
      servers: nats.hub.url,
      user: nats.admin.user,
      pass: nats.admin.password,
      maxReconnectAttempts: -1,
      reconnectTimeWait: 200,
    });
    for (const m of MEMBERS) links[m] = new Watched(await open(m));
    await Promise.all(MEMBERS.map((m) => links[m].listing()));
  });

  after(async () => {
    for (const m of MEMBERS) await links[m]?.link[Symbol.asyncDispose]();
    await admin?.close();
    await nats?.[Symbol.asyncDispose]();
  });

  test('a put by member A is seen by B and C', async () => {
    const ref = ns('a', 'payments');
    await links.a.link.put(ref, { labels: { team: 'pay' } });
    for (const m of MEMBERS)
      await links[m].next(isPut(ref, { labels: { team: 'pay' } }), `${m} sees a's put`);
    assert.equal(await atHub(entryKey(ref)), '{"labels":{"team":"pay"}}');
    assert.ok(links.b.link.state().connected);
    assert.ok(links.b.link.state().lastContactUnixMs > 0);
  });

  test("member A cannot write B's keys: the link refuses, and the hub refuses A's server whatever A's code does", async () => {
    const ref = ns('b', 'ledger');
    await links.b.link.put(ref, { labels: { owner: 'b' } });
    await links.a.next(isPut(ref), "a sees b's entry");
    await assert.rejects(
      links.a.link.put(ref, { labels: { owner: 'a' } }),
      /writes only its own entries/,
    );
    // Around the link: a client of A's server with the hub's domain, as a rogue controller would be.
    // 2.9.10 drops what it refuses: the publish finds no responder (nats.js: "jetstream is not enabled") or times out.
    const refused = /timeout|not enabled|no responders/i;
    const rogue = await connect({ servers: nats.members.a!.url, inboxPrefix: names.inbox('a') });
    try {
      const kv = await new Kvm(jetstream(rogue, { domain: 'hub', timeout: 1000 })).open(
        names.bucket,
      );
      await assert.rejects(kv.put(entryKey(ref), '{"labels":{"owner":"a"}}'), refused);
      await assert.rejects(kv.delete(entryKey(ref)), refused);
      const jsm = await jetstreamManager(rogue, { domain: 'hub', timeout: 1000 });
      await assert.rejects(jsm.streams.purge(names.stream), refused);
      await assert.rejects(jsm.streams.delete(names.stream), refused);
      // Its own keys it may write.
      await kv.put(entryKey(ns('a', 'rogue-own')), '{}');
    } finally {
      await rogue.close();
    }
    assert.equal(await atHub(entryKey(ref)), '{"labels":{"owner":"b"}}');
  });

  test('an entry that cannot be read arrives as invalid, never as a put', async () => {
    const kv = await new Kvm(jetstream(admin)).open(names.bucket);
    const from = links.c.events.length;
    await kv.put(entryKey(ns('b', 'not-json')), 'not json{');
    await kv.put(
      entryKey({ kind: 'ep', cluster: 'b', name: 'x/big' }),
      JSON.stringify({ pad: 'x'.repeat(2000) }),
    );
    await kv.put('zz.b.eA', '{}');
    await jetstream(admin).publish(`${names.keyPrefix}ns.b.not+base64`, '{}');
    await kv.put(entryKey({ kind: 'member', cluster: 'b', name: 'other' }), '{}');
    const reasons: Array<[string, RegExp]> = [
      [entryKey(ns('b', 'not-json')), /not JSON/],
      [entryKey({ kind: 'ep', cluster: 'b', name: 'x/big' }), /over the 1024 bytes of a ep entry/],
      ['zz.b.eA', /unknown kind/],
      ['ns.b.not+base64', /not base64url/],
      [entryKey({ kind: 'member', cluster: 'b', name: 'other' }), /named "self"/],
    ];
    for (const [key, reason] of reasons) {
      const i = await links.c.next(
        (e) => e.type === 'invalid' && e.key === key,
        `invalid ${key}`,
        from,
      );
      const e = links.c.events[i]!;
      assert.ok(e.type === 'invalid' && reason.test(e.reason), `${key}: ${JSON.stringify(e)}`);
    }
    assert.ok(!links.c.events.slice(from).some((e) => e.type === 'put'));
  });

  test('keys name a kind, the owning cluster and the base64url of the name', () => {
    const ref = { kind: 'ep', cluster: 'b', name: 'prod/web-0' } as const;
    assert.equal(entryKey(ref), 'ep.b.cHJvZC93ZWItMA');
    assert.deepEqual(parseEntryKey(entryKey(ref)), ref);
    for (const bad of ['ep.b', 'ep.b.x.y', 'ep.b!.eA', 'ep.b.', `ep.b.${'A'.repeat(2000)}`])
      assert.equal(typeof parseEntryKey(bad), 'string', bad);
  });

  test("the hub killed: every link says disconnected, keeps its last contact, and refuses puts; the member's own JetStream keeps working", async () => {
    const from = Object.fromEntries(MEMBERS.map((m) => [m, links[m].events.length]));
    await nats.hub.kill();
    for (const m of MEMBERS)
      await links[m].next((e) => e.type === 'disconnected', `${m} disconnected`, from[m]);
    const state = links.a.link.state();
    assert.equal(state.connected, false);
    assert.ok(state.lastContactUnixMs > 0);
    assert.notEqual(state.lastError, '');
    await assert.rejects(links.a.link.put(ns('a', 'while-down'), {}), /not connected/);
    // Nothing after the disconnection but, eventually, a reconnection: no deletes, no puts.
    for (const m of MEMBERS) {
      const after = links[m].events.slice(from[m]);
      assert.ok(!after.some((e) => e.type === 'delete' || e.type === 'put'), m);
    }
    const local = await connect({ servers: nats.members.a!.url });
    try {
      const js = jetstream(local);
      assert.equal((await (await jetstreamManager(local)).getAccountInfo()).domain, 'a');
      const kv = await new Kvm(js).create('local_objects');
      await kv.put('k', 'v');
      assert.equal((await kv.get('k'))?.string(), 'v');
    } finally {
      await local.close();
    }
  });

  test('the hub restarted: every link says connected and lists everything afresh', async () => {
    const from = Object.fromEntries(MEMBERS.map((m) => [m, links[m].events.length]));
    await nats.hub.start();
    for (const m of MEMBERS) {
      const listing = await links[m].listing(from[m]);
      assert.ok(listing.some(isPut(ns('a', 'payments'), { labels: { team: 'pay' } })), m);
      assert.ok(listing.some(isPut(ns('b', 'ledger'), { labels: { owner: 'b' } })), m);
    }
    await eventually(
      async () => (links.c.link.state().connected ? true : undefined),
      'c connected',
    );
    await links.c.link.put(ns('c', 'after-restart'), { n: 1 });
    await links.a.next(isPut(ns('c', 'after-restart')), 'a sees c after the restart');
  });

  test('a member whose own server restarts sees, in its fresh listing, a removal made while it was away', async () => {
    const ref = ns('b', 'short-lived');
    await links.b.link.put(ref, { n: 1 });
    await links.a.next(isPut(ref), 'a sees it');
    const from = links.a.events.length;
    await nats.members.a!.kill();
    await links.a.next((e) => e.type === 'disconnected', 'a disconnected', from);
    await links.b.link.remove(ref);
    await nats.members.a!.start();
    const listing = await links.a.listing(from);
    assert.ok(listing.some((e) => e.type === 'delete' && entryKey(e.ref) === entryKey(ref)));
    assert.ok(!listing.some(isPut(ref)));
  });
});

describe("a member server with Weir's own users (weirctl nats config --federation)", () => {
  let nats: FederationNats;
  const pw = 'pw-test';
  before(async () => {
    nats = await startFederationHub({
      federation: FEDERATION,
      members: ['a'],
      memberConfig: (cluster) =>
        natsAuthorization({
          cluster,
          federation: FEDERATION,
          controller: { user: 'controller', password: pw },
          agents: [{ node: 'n1', user: agentUser('n1'), password: pw }],
        }),
    });
  });
  after(() => nats?.[Symbol.asyncDispose]());

  test("the controller's user reaches the hub through the leaf connection, an agent's does not", async () => {
    await using link = await openNatsFederationLink({
      federation: FEDERATION,
      cluster: 'a',
      endpoint: { servers: [nats.members.a!.url], user: 'controller', password: pw },
      log,
      probeMs: 500,
      retryMs: 200,
    });
    const w = new Watched(link);
    await w.listing();
    await link.put(ns('a', 'prod'), { labels: {} });
    await w.next(isPut(ns('a', 'prod')), 'its own put');
    const agent = await connect({
      servers: nats.members.a!.url,
      user: agentUser('n1'),
      pass: pw,
      inboxPrefix: names.inbox('a'),
    });
    try {
      const js = jetstream(agent, { domain: 'hub', timeout: 1000 });
      const kv = await new Kvm(js).open(names.bucket).catch(() => undefined);
      if (kv !== undefined) {
        await assert.rejects(kv.put(entryKey(ns('a', 'by-agent')), '{}'));
        await assert.rejects(kv.get(entryKey(ns('a', 'prod'))));
      }
    } finally {
      await agent.close().catch(() => undefined);
    }
  });
});

describe('a hub without the bucket yet', () => {
  let nats: FederationNats;
  before(async () => {
    nats = await startFederationHub({ federation: FEDERATION, members: ['a'], bucket: false });
  });
  after(() => nats?.[Symbol.asyncDispose]());

  test("a member's link waits for the bucket, saying why, and connects once the hub's operator created it", async () => {
    await using link = await openNatsFederationLink({
      federation: FEDERATION,
      cluster: 'a',
      endpoint: { servers: [nats.members.a!.url] },
      log,
      probeMs: 500,
      retryMs: 200,
    });
    const w = new Watched(link);
    await eventually(
      async () => (/no bucket weir_fed_f1/.test(link.state().lastError) ? true : undefined),
      'the link to say the bucket is missing',
    );
    assert.equal(link.state().connected, false);
    // The operator's link (on the hub, as its user) may create it.
    await using creator = await openNatsFederationLink({
      federation: FEDERATION,
      cluster: 'hubop',
      endpoint: { servers: [nats.hub.url], user: nats.admin.user, password: nats.admin.password },
      log,
      createBucket: true,
      probeMs: 500,
      retryMs: 200,
    });
    await eventually(async () => (creator.state().connected ? true : undefined), 'the creator');
    await w.listing();
    await link.put(ns('a', 'first'), {});
    await w.next(isPut(ns('a', 'first')), 'the first put');
  });
});

describe('a member whose importer falls behind the hub', () => {
  let nats: FederationNats;
  before(async () => {
    nats = await startFederationHub({ federation: FEDERATION, members: MEMBERS });
  });
  after(async () => nats?.[Symbol.asyncDispose]());

  test('is listed again once it is further behind than its bound, and loses nothing', async () => {
    const open = (m: Member, maxQueueBytes?: number) =>
      openNatsFederationLink({
        federation: FEDERATION,
        cluster: m,
        endpoint: { servers: [nats.members[m]!.url] },
        log,
        createBucket: true,
        probeMs: 500,
        retryMs: 100,
        ...(maxQueueBytes !== undefined ? { maxQueueBytes } : {}),
      });
    await using writer = await open('a');
    await using slow = await open('c', 8 * 1024);
    const events = slow.watch()[Symbol.asyncIterator]();
    const until = async (pred: (e: LinkEvent) => boolean, what: string) => {
      const seen: LinkEvent[] = [];
      for (;;) {
        const r = await events.next();
        assert.ok(!r.done, `the watch ended before ${what}`);
        seen.push(r.value);
        if (pred(r.value)) return seen;
      }
    };
    await until((e) => e.type === 'synced', 'the first listing');
    await eventually(async () => (writer.state().connected ? true : undefined), 'a connected');
    // One entry rewritten 40 times (~1 KB each) while c reads nothing: 40 KB of updates queued,
    // over its 8 KB bound, while a fresh listing holds the entry's last value only.
    const ref = ns('a', 'churn');
    for (let n = 0; n < 40; n++) await writer.put(ref, { n, pad: 'x'.repeat(1000) });
    // Reading again: c gave up what it had queued, listed afresh, and ends with the last value.
    let listedAgain = false;
    let last: unknown;
    const deadline = Date.now() + 30_000;
    while (!((last as { n?: number } | undefined)?.n === 39) && Date.now() < deadline) {
      const r = await events.next();
      assert.ok(!r.done);
      if (r.value.type === 'put' && entryKey(r.value.ref) === entryKey(ref)) last = r.value.value;
      if (
        r.value.type === 'disconnected' &&
        /fell \d+ bytes of entries behind/.test(r.value.reason)
      )
        listedAgain = true;
    }
    assert.equal((last as { n: number }).n, 39, 'the last value');
    assert.ok(listedAgain, 'c said it fell behind and listed again');
  });
});
