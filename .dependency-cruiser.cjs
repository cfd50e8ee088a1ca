/**
 * The rooms of the tree and the doors between them (CONTRIBUTING.md):
 * controller/ and vrouter-agent/ import shared/, never each other; shared/
 * imports neither; production rooms never import tests, benchmarks or the
 * testing room; benchmarks never import tests; no circular imports.
 *
 * Inside controller/, floors (lowest first; docs/design.md): a floor imports
 * only floors below it (and shared/), never one above.
 */
const production = '^(shared|controller|vrouter-agent|cli)/';

/** The controller's floors, lowest first; each entry is one floor's paths. */
const floors = [
  { name: 'kube', paths: ['^controller/kube/'] },
  { name: 'translate', paths: ['^controller/translate/'] },
  { name: 'model', paths: ['^controller/model/'] },
  { name: 'sources-store', paths: ['^controller/sources/', '^controller/store/'] },
  {
    name: 'distribute',
    paths: ['^controller/distribute/', '^controller/relay/', '^controller/federation/'],
  },
  { name: 'top', paths: ['^controller/[^/]+$', '^controller/leader/', '^controller/console/'] },
];
const floorRules = floors.slice(0, -1).map((floor, i) => ({
  name: `floor-${floor.name}-not-above`,
  severity: 'error',
  comment: `controller/ floor ${floor.name} imports only floors below it, never ${floors
    .slice(i + 1)
    .map((f) => f.name)
    .join(', ')}.`,
  from: { path: floor.paths },
  to: { path: floors.slice(i + 1).flatMap((f) => f.paths) },
}));
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
    ...floorRules,
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    exclude: { path: '^(dist|node_modules)/' },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    enhancedResolveOptions: { extensions: ['.ts', '.js', '.mjs'] },
  },
};
