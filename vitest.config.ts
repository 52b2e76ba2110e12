import { defineConfig } from 'vitest/config';

// Unit tests sit beside the code (`*.test.ts`); cross-role integration and end-to-end tests live in
// `test/`. Integration tests spawn the compiled `dist/` binaries, so `npm test` builds first.
export default defineConfig({
  test: {
    include: ['{control,agent,scheduler,adapters,test}/**/*.test.ts'],
    exclude: ['node_modules/**', 'dist/**', '.sst/**'],
    pool: 'forks',
    testTimeout: 120_000,
    hookTimeout: 180_000,
    teardownTimeout: 30_000,
    reporters: ['default'],
  },
});
