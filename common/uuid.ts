import { InvalidArgumentError } from './errors.js';

// The textual form PostgreSQL prints; other spellings it would accept (braces,
// no hyphens) are refused so that an id has one form on the wire.
const uuidPattern = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export function isUuid(value: string): boolean {
  return uuidPattern.test(value);
}

/** A UUID field of a request, lower-cased; otherwise InvalidArgumentError naming the field. */
export function uuidField(field: string, value: string): string {
  if (value === '') throw new InvalidArgumentError(field, 'required');
  if (!uuidPattern.test(value)) {
    throw new InvalidArgumentError(
      field,
      `must be a UUID such as 123e4567-e89b-12d3-a456-426614174000, got ${JSON.stringify(value.slice(0, 64))}`,
    );
  }
  return value.toLowerCase();
}
