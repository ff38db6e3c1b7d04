// The form of the key that seals VIM credentials at rest: checked where the
// environment is read (common/env.ts) and where the Tacker server loads it.

export function decodeSecretKey(text: string, source: string): Buffer {
  const t = text.trim();
  const key = /^[0-9a-fA-F]{64}$/.test(t) ? Buffer.from(t, 'hex') : Buffer.from(t, 'base64');
  if (key.length !== 32)
    throw new Error(`${source}: expected 32 bytes as base64 or hex (e.g. \`openssl rand -base64 32\`), got ${key.length} bytes`);
  return key;
}
