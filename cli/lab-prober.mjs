// The lab's prober: runs inside one pod's netns (`ip netns exec`), started by
// `weirctl lab probe`. Plain JavaScript with no imports from Weir, so that a
// pod's prober starts in tens of milliseconds from the sources or the build.
//
// Contract: argv[2] is { serve: [{ protocol: "TCP"|"UDP", port }] }. It
// listens on every serve port (TCP echo, UDP echo; dual-stack) and prints
// {"ready":true} on stdout. Then each line on stdin is a run,
// { probes: [{ id, protocol, ip, port }], timeoutMs }: it runs every probe at
// once and prints {"results":{id:{ok,why?}}}. It keeps serving until stdin
// closes (other pods may still be probing it). A probe succeeds only when
// the echo of its token comes back: the connection carried data both ways.
import dgram from 'node:dgram';
import net from 'node:net';

const job = JSON.parse(process.argv[2] ?? '{}');
const closers = [];
let runs = 0;

function serveTcp(port) {
  return new Promise((resolve, reject) => {
    const server = net.createServer((s) => {
      s.on('error', () => s.destroy());
      s.setTimeout(60_000, () => s.destroy());
      s.pipe(s);
    });
    server.once('error', reject);
    server.listen({ host: '::', port, ipv6Only: false }, () => resolve());
    closers.push(() => server.close());
  });
}

function serveUdp(port) {
  return new Promise((resolve, reject) => {
    const sock = dgram.createSocket({ type: 'udp6', ipv6Only: false });
    sock.on('message', (msg, rinfo) => sock.send(msg, rinfo.port, rinfo.address));
    sock.once('error', reject);
    sock.bind(port, '::', () => resolve());
    closers.push(() => sock.close());
  });
}

function probeTcp(p, token, timeoutMs) {
  return new Promise((resolve) => {
    let got = '';
    const s = net.connect({ host: p.ip, port: p.port });
    const done = (r) => {
      clearTimeout(t);
      s.destroy();
      resolve(r);
    };
    const t = setTimeout(() => done({ ok: false, why: 'timeout' }), timeoutMs);
    s.on('connect', () => s.write(token));
    s.on('data', (b) => {
      got += b.toString();
      if (got.includes(token)) done({ ok: true });
    });
    s.on('error', (err) => done({ ok: false, why: err.code ?? err.message }));
    s.on('close', () => done({ ok: false, why: 'closed' }));
  });
}

function probeUdp(p, token, timeoutMs) {
  return new Promise((resolve) => {
    const sock = dgram.createSocket(p.ip.includes(':') ? 'udp6' : 'udp4');
    let finished = false;
    const done = (r) => {
      if (finished) return;
      finished = true;
      clearTimeout(t);
      clearInterval(again);
      sock.close();
      resolve(r);
    };
    const send = () => sock.send(token, p.port, p.ip, () => undefined);
    const t = setTimeout(() => done({ ok: false, why: 'timeout' }), timeoutMs);
    // A datagram can be lost; send again until the deadline.
    const again = setInterval(send, Math.max(50, Math.floor(timeoutMs / 5)));
    sock.on('message', (msg) => {
      if (msg.toString().includes(token)) done({ ok: true });
    });
    sock.on('error', (err) => done({ ok: false, why: err.code ?? err.message }));
    send();
  });
}

async function run(r) {
  const timeoutMs = Math.min(Math.max(Number(r.timeoutMs) || 2000, 100), 30_000);
  const n = ++runs;
  const results = {};
  await Promise.all(
    (r.probes ?? []).map(async (p, i) => {
      const token = `weir-lab-${process.pid}-${n}-${i}\n`;
      results[p.id] = await (p.protocol === 'UDP'
        ? probeUdp(p, token, timeoutMs)
        : probeTcp(p, token, timeoutMs));
    }),
  );
  process.stdout.write(`${JSON.stringify({ results })}\n`);
}

async function main() {
  for (const s of job.serve ?? []) {
    if (s.protocol === 'TCP') await serveTcp(s.port);
    else if (s.protocol === 'UDP') await serveUdp(s.port);
  }
  process.stdout.write(`${JSON.stringify({ ready: true })}\n`);
  let buf = '';
  let queue = Promise.resolve();
  process.stdin.on('data', (chunk) => {
    buf += chunk.toString();
    for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n')) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      queue = queue.then(() => run(JSON.parse(line)));
    }
  });
  process.stdin.on('end', () => {
    for (const c of closers) c();
    process.exit(0);
  });
}

main().catch((err) => {
  process.stdout.write(`${JSON.stringify({ error: err.code ?? err.message })}\n`);
  process.exit(1);
});
