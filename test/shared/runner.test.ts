import assert from 'node:assert/strict';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { CoalescingRunner } from '../../shared/runner.js';

/** Runs of a runner whose work takes `costMs`, requested continuously for `forMs`. */
async function startsWhileBusy(costFactor: number, costMs: number, forMs: number) {
  const starts: number[] = [];
  const runner = new CoalescingRunner(
    async () => {
      starts.push(Date.now());
      await sleep(costMs);
    },
    { minIntervalMs: 10, costFactor, onError: (err) => assert.fail(String(err)) },
  );
  const end = Date.now() + forMs;
  while (Date.now() < end) {
    runner.request();
    await sleep(2);
  }
  runner.close();
  return starts;
}

test('requests made during a run coalesce into one more run after it', async () => {
  let runs = 0;
  const runner = new CoalescingRunner(
    async () => {
      runs++;
      await sleep(20);
    },
    { minIntervalMs: 0, onError: (err) => assert.fail(String(err)) },
  );
  runner.request();
  await sleep(5);
  for (let i = 0; i < 10; i++) runner.request();
  await sleep(80);
  runner.close();
  assert.equal(runs, 2);
});

test('a cost factor spaces runs by that multiple of the last run’s duration', async () => {
  // Work of at least 20 ms requested without pause: with factor 5 a run
  // starts at least 100 ms after the one before (timers never fire early,
  // so this holds on a loaded machine too); without it, after 20 ms.
  const spaced = await startsWhileBusy(5, 20, 450);
  const gaps = spaced.slice(1).map((t, i) => t - spaced[i]!);
  assert.ok(gaps.length >= 1, `${spaced.length} runs`);
  for (const g of gaps) assert.ok(g >= 99, `a gap of ${g} ms`);
});
