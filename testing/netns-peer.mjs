#!/usr/bin/env node
// A traffic peer run inside a network namespace (`ip netns exec NS node
// testing/netns-peer.mjs ...`): the machines have neither socat nor netcat
// for tests. Plain JavaScript so that it starts fast.
//
//   serve tcp|udp HOST PORT   echo server; prints "ready" once listening.
//                             TCP replies "echo:<line>" per line; UDP echoes each datagram.
//   connect tcp HOST PORT [TIMEOUT_MS]
//                             one connection, driven by stdin lines: each line is sent and
//                             the reply printed as "reply:<line>"; prints "connected",
//                             "closed" or "error:<code>"; exits when stdin ends.
//   probe tcp|udp HOST PORT [TIMEOUT_MS]
//                             one attempt: prints "ok" when the echo comes back, else
//                             "fail:<reason>" (fail:ECONNREFUSED: a RST, or for UDP an ICMP
//                             port unreachable); exit status 0 either way.
//   flood tcp HOST PORT COUNT [TIMEOUT_MS]
//                             COUNT sequential connections (connect, one echo, close);
//                             prints JSON {ok, failed, seconds}.
//   blast udp HOST FIRST_PORT COUNT
//                             COUNT datagrams from one socket to ports FIRST_PORT.. (each a new
//                             flow), in bursts of 256; prints JSON {sent, seconds}.
import dgram from 'node:dgram';
import net from 'node:net';
import readline from 'node:readline';

const [mode, proto, host, portText, a4, a5] = process.argv.slice(2);
// Pipes are written synchronously on Linux: a line is out before process.exit.
const out = (line) => process.stdout.write(`${line}\n`);
const port = Number(portText);
const family = net.isIP(host) === 6 ? 'udp6' : 'udp4';

function serve() {
  if (proto === 'tcp') {
    const server = net.createServer((s) => {
      s.setNoDelay(true);
      let buf = '';
      s.on('data', (d) => {
        buf += d.toString();
        let i = buf.indexOf('\n');
        while (i >= 0) {
          s.write(`echo:${buf.slice(0, i)}\n`);
          buf = buf.slice(i + 1);
          i = buf.indexOf('\n');
        }
      });
      s.on('error', () => {});
    });
    server.listen(port, host, () => out('ready'));
  } else {
    const sock = dgram.createSocket(family);
    sock.on('message', (m, r) => sock.send(m, r.port, r.address));
    sock.bind(port, host, () => out('ready'));
  }
}

function probe(timeoutMs) {
  const fail = (why) => {
    out(`fail:${why}`);
    process.exit(0);
  };
  const timer = setTimeout(() => fail('timeout'), timeoutMs);
  if (proto === 'tcp') {
    const s = net.connect({ host, port });
    s.on('connect', () => s.write('probe\n'));
    s.on('data', () => {
      clearTimeout(timer);
      out('ok');
      s.destroy();
      process.exit(0);
    });
    s.on('error', (e) => fail(e.code ?? 'error'));
  } else {
    const sock = dgram.createSocket(family);
    sock.on('message', () => {
      clearTimeout(timer);
      out('ok');
      process.exit(0);
    });
    // Connected, so that an ICMP port unreachable comes back as ECONNREFUSED.
    sock.on('error', (e) => fail(e.code ?? 'error'));
    // Retries within the timeout: UDP has no handshake to retransmit.
    const send = () => sock.send('probe');
    sock.connect(port, host, () => {
      send();
      setInterval(send, 250).unref();
    });
  }
}

function connect(timeoutMs) {
  const s = net.connect({ host, port });
  s.setNoDelay(true);
  const timer = setTimeout(() => {
    out('error:timeout');
    process.exit(0);
  }, timeoutMs);
  s.on('connect', () => {
    clearTimeout(timer);
    out('connected');
  });
  let buf = '';
  s.on('data', (d) => {
    buf += d.toString();
    let i = buf.indexOf('\n');
    while (i >= 0) {
      out(`reply:${buf.slice(0, i)}`);
      buf = buf.slice(i + 1);
      i = buf.indexOf('\n');
    }
  });
  s.on('error', (e) => out(`error:${e.code ?? 'error'}`));
  s.on('close', () => {
    out('closed');
    process.exit(0);
  });
  const rl = readline.createInterface({ input: process.stdin });
  rl.on('line', (line) => s.write(`${line}\n`));
  rl.on('close', () => s.destroy());
}

async function flood(count, timeoutMs) {
  let ok = 0;
  let failed = 0;
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < count; i++) {
    const good = await new Promise((resolve) => {
      const s = net.connect({ host, port });
      const timer = setTimeout(() => {
        s.destroy();
        resolve(false);
      }, timeoutMs);
      s.on('connect', () => s.write('x\n'));
      s.on('data', () => {
        clearTimeout(timer);
        s.destroy();
        resolve(true);
      });
      s.on('error', () => {
        clearTimeout(timer);
        resolve(false);
      });
    });
    if (good) ok++;
    else failed++;
  }
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  out(JSON.stringify({ ok, failed, seconds }));
}

async function blast(firstPort, count) {
  const sock = dgram.createSocket(family);
  await new Promise((resolve) => sock.bind(0, resolve));
  const payload = Buffer.from('x');
  const t0 = process.hrtime.bigint();
  let sent = 0;
  while (sent < count) {
    const burst = Math.min(256, count - sent);
    await Promise.all(
      Array.from(
        { length: burst },
        (_, i) =>
          new Promise((resolve) =>
            sock.send(payload, firstPort + ((sent + i) % (65536 - firstPort)), host, resolve),
          ),
      ),
    );
    sent += burst;
  }
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  sock.close();
  out(JSON.stringify({ sent, seconds }));
}

if (mode === 'serve') serve();
else if (mode === 'blast') await blast(Number(portText), Number(a4 ?? 1000));
else if (mode === 'probe') probe(Number(a4 ?? 2000));
else if (mode === 'connect') connect(Number(a4 ?? 3000));
else if (mode === 'flood') await flood(Number(a4 ?? 100), Number(a5 ?? 2000));
else {
  console.error(`unknown mode ${mode}`);
  process.exit(2);
}
