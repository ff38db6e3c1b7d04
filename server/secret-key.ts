// The key that seals VIM credentials at rest. Every Tacker server of one
// deployment must use the same key: set VIMMON_SECRET_KEY on each. Without it a
// key file is made on first start in the data folder (fine for one machine).
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';

export interface SecretKeyOptions {
  /** 32 bytes as base64 or hex. */
  secretKey?: string;
  dataDir: string;
}

export function decodeSecretKey(text: string, source: string): Buffer {
  const t = text.trim();
  const key = /^[0-9a-fA-F]{64}$/.test(t) ? Buffer.from(t, 'hex') : Buffer.from(t, 'base64');
  if (key.length !== 32) throw new Error(`${source}: expected 32 bytes as base64 or hex (e.g. \`openssl rand -base64 32\`), got ${key.length} bytes`);
  return key;
}

export function loadSecretKey(options: SecretKeyOptions): { key: Buffer; source: string } {
  if (options.secretKey) return { key: decodeSecretKey(options.secretKey, 'VIMMON_SECRET_KEY'), source: 'VIMMON_SECRET_KEY' };
  const file = path.resolve(options.dataDir, 'secret.key');
  if (!existsSync(file)) {
    mkdirSync(path.dirname(file), { recursive: true });
    // wx: two servers starting at once on one data folder must not overwrite each other's key.
    try {
      writeFileSync(file, randomBytes(32).toString('base64') + '\n', { mode: 0o600, flag: 'wx' });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
  }
  return { key: decodeSecretKey(readFileSync(file, 'utf8'), file), source: file };
}
