/**
 * The house's import rules (npm run lint, run by .ci/run before the tests). The layers, bottom up:
 * adapters/ (ports, stores, logging, errors) < agent/ and scheduler/ (the roles) < control/ (the
 * CLI and the manager). The wire protocol lives in scheduler/protocol/ and is the one part of a role
 * another role may import. Test code (test/, *.test.ts) may import anything; nothing else imports it.
 */
module.exports = {
  forbidden: [
    {
      name: 'no-circular',
      severity: 'error',
      // A Peer knows its Task and a Task its Peers: that pair references each other with `import type`
      // only (erased at build), which this rule allows; any cycle that survives compilation fails.
      comment: 'Import cycles make rooms inseparable.',
      from: {},
      to: { circular: true, dependencyTypesNot: ['type-only'], viaOnly: { dependencyTypesNot: ['type-only'] } },
    },
    {
      name: 'no-circular-types',
      severity: 'error',
      // The type-only exemption above is for that pair alone: anywhere else a cycle of `import type`
      // fails too (cli-get.ts and cli-get-recursive.ts share agent/cli-get-args.ts instead).
      comment: 'Type-only cycles still tie two files together; only the Peer/Task pair may keep one.',
      from: { pathNot: '^scheduler/resource/(peer|task)\\.ts$' },
      to: { circular: true },
    },
    { name: 'adapters-import-nothing-above', severity: 'error', from: { path: '^adapters/', pathNot: '\\.test\\.ts$' }, to: { path: '^(agent|scheduler|control)/' } },
    { name: 'roles-do-not-import-control', severity: 'error', from: { path: '^(agent|scheduler)/', pathNot: '\\.test\\.ts$' }, to: { path: '^control/' } },
    { name: 'scheduler-does-not-import-agent', severity: 'error', from: { path: '^scheduler/', pathNot: '\\.test\\.ts$' }, to: { path: '^agent/' } },
    {
      name: 'agent-imports-only-the-protocol-of-the-scheduler',
      severity: 'error',
      from: { path: '^agent/', pathNot: '\\.test\\.ts$' },
      to: { path: '^scheduler/', pathNot: '^scheduler/protocol/' },
    },
    { name: 'protocol-imports-only-adapters', severity: 'error', from: { path: '^scheduler/protocol/', pathNot: '\\.test\\.ts$' }, to: { path: '^(agent|control)/|^scheduler/(?!protocol/)' } },
    {
      name: 'no-test-code-in-production',
      severity: 'error',
      from: { path: '^(adapters|agent|scheduler|control)/', pathNot: '\\.test\\.ts$' },
      to: { path: '(^test/|\\.test\\.ts$)' },
    },
    { name: 'not-to-unresolvable', severity: 'error', from: {}, to: { couldNotResolve: true } },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    exclude: { path: '^(node_modules|dist|dist-test|infra/sst|\\.sst)/' },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    enhancedResolveOptions: { exportsFields: ['exports'], conditionNames: ['import', 'require', 'node', 'default', 'types'] },
  },
};
