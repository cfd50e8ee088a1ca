/**
 * The rooms of the tree and the doors between them (CONTRIBUTING.md):
 * controller/ and vrouter-agent/ import shared/, never each other; shared/
 * imports neither; production rooms never import tests, benchmarks or the
 * testing room; benchmarks never import tests; no circular imports.
 */
const production = '^(shared|controller|vrouter-agent|cli)/';
module.exports = {
  forbidden: [
    {
      name: 'no-circular',
      severity: 'error',
      comment: 'A cycle ties modules into one unit that can only be understood and tested whole.',
      from: {},
      to: { circular: true },
    },
    {
      name: 'controller-not-agent',
      severity: 'error',
      comment: 'The controller and the agent share code only through shared/.',
      from: { path: '^controller/' },
      to: { path: '^vrouter-agent/' },
    },
    {
      name: 'agent-not-controller',
      severity: 'error',
      comment: 'The controller and the agent share code only through shared/.',
      from: { path: '^vrouter-agent/' },
      to: { path: '^controller/' },
    },
    {
      name: 'shared-stands-alone',
      severity: 'error',
      comment: 'shared/ is what both sides need; it depends on neither side nor on the CLI.',
      from: { path: '^shared/' },
      to: { path: '^(controller|vrouter-agent|cli)/' },
    },
    {
      name: 'production-not-tests',
      severity: 'error',
      comment: 'Production code never imports tests, benchmarks or test-only helpers.',
      from: { path: production },
      to: { path: '^(test|bench|testing)/' },
    },
    {
      name: 'bench-not-tests',
      severity: 'error',
      comment: 'Benchmarks share fixtures with tests through testing/, never by importing test/.',
      from: { path: '^bench/' },
      to: { path: '^test/' },
    },
    {
      name: 'testing-not-tests',
      severity: 'error',
      comment: 'The testing room serves tests and benchmarks; it imports neither.',
      from: { path: '^testing/' },
      to: { path: '^(test|bench)/' },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    exclude: { path: '^(dist|node_modules)/' },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    enhancedResolveOptions: { extensions: ['.ts', '.js', '.mjs'] },
  },
};
