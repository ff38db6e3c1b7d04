#!/usr/bin/env node
// The `vimmon` command: TypeScript runs through tsx (ts-proto emits enums, which
// Node's own type stripping cannot run).
import { register } from 'tsx/esm/api';

register();
await import('./main.ts');
