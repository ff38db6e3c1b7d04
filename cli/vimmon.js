#!/usr/bin/env node
// The `vimmon` command: the compiled tree in dist/, which `npm install` builds
// (the `prepare` script) and `npm run build` rebuilds.
import { existsSync } from 'node:fs';

const main = new URL('../dist/cli/main.js', import.meta.url);
if (!existsSync(main)) {
  process.stderr.write('vimmon: dist/ is not built: run `npm run build` in the project folder\n');
  process.exit(1);
}
await import(main.href);
