// The key that seals VIM credentials at rest. Every Tacker server of one
// deployment must use the same key: set VIMMON_SECRET_KEY on each. Without it a
// key file is made on first start in the data folder (fine for one machine).
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { decodeSecretKey } from '../common/secret-key.js';

export interface SecretKeyOptions {
  /** 32 bytes as base64 or hex. */
  secretKey?: string;
  dataDir: string;
}

export function loadSecretKey(options: SecretKeyOptions): { key: Buffer; source: string } {
  if (options.secretKey) return { key: decodeSecretKey(options.secretKey, 'VIMMON_SECRET_KEY'), source: 'VIMMON_SECRET_KEY' };
  const file = path.resolve(options.dataDir, 'secret.key');
  if (!existsSync(file)) {
    mkdirSync(path.dirname(file), { recursive: true });
    // wx: two servers starting at once on one data folder must not overwrite each other's key.
    try {
      writeFileSync(file, `${randomBytes(32).toString('base64')}\n`, { mode: 0o600, flag: 'wx' });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
  }
  return { key: decodeSecretKey(readFileSync(file, 'utf8'), file), source: file };
}
