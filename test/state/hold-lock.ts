/**
 * A process that holds a state directory's lock until it is killed, for the
 * lock tests: `node --import tsx test/state/hold-lock.ts DIR`. Prints
 * "locked" once it holds it.
 */
import { silentLogger } from '../../shared/log.js';
import { StateDirLock } from '../../shared/state/lock.js';

const dir = process.argv[2]!;
await StateDirLock.acquire(dir, {
  program: 'hold-lock',
  detail: 'test',
  log: silentLogger,
  onCompromised: () => {
    process.stdout.write('compromised\n');
    process.exit(3);
  },
});
process.stdout.write('locked\n');
process.on('SIGTERM', () => process.exit(0));
setInterval(() => undefined, 1_000);
