import assert from 'node:assert/strict';
import { test } from 'node:test';
import { matchesLabels, parseSelectorText } from '../../shared/policy/selector.js';

// [selector, labels, selected?] — or [selector, RegExp] for text that is not a selector.
const cases: Array<[string, Record<string, string>, boolean] | [string, RegExp]> = [
  ['app=web', { app: 'web' }, true],
  ['app==web', { app: 'db' }, false],
  ['app!=web', { app: 'db' }, true],
  ['app!=web', {}, true],
  ['tier in (frontend, backend)', { tier: 'backend' }, true],
  ['tier notin (frontend,backend)', { tier: 'backend' }, false],
  ['app', { app: 'x' }, true],
  ['!canary', { canary: 'yes' }, false],
  ['app=web,tier in (a,b)', { app: 'web', tier: 'b' }, true],
  ['app=web,tier in (a,b)', { app: 'web', tier: 'c' }, false],
  ['', { anything: 'x' }, true],
  ['app=we b', /not a requirement/],
  ['tier in (a,b', /unbalanced "\("/],
  ['app=web,,x', /empty requirement/],
  ['app=-bad-', /not a label value/],
];
for (const c of cases) {
  if (c[1] instanceof RegExp) {
    const [text, message] = c as [string, RegExp];
    test(`-l ${JSON.stringify(text)} is refused with a message`, () => {
      const s = parseSelectorText(text);
      assert.equal(typeof s, 'string');
      assert.match(s as string, message);
    });
  } else {
    const [text, labels, want] = c as [string, Record<string, string>, boolean];
    test(`-l ${JSON.stringify(text)} ${want ? 'selects' : 'does not select'} ${JSON.stringify(labels)}`, () => {
      const s = parseSelectorText(text);
      assert.notEqual(typeof s, 'string', String(s));
      assert.equal(matchesLabels(labels, s as Exclude<typeof s, string>), want);
    });
  }
}
