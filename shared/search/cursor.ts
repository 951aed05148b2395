import { isUuid } from '../domain/ids.ts';
import { ValidationError } from '../errors/domain.ts';

/**
 * Where a page ended in the sort (accepted_at DESC, module, id): the last row's acceptance time in
 * microseconds since the epoch (timestamptz's own precision: a millisecond cursor would skip or repeat
 * rows accepted within the same millisecond), its module and id.
 */
export interface SearchCursor {
  us: number;
  module: string;
  id: string;
}

/** Opaque to clients: base64url JSON `[us, module, id]`. */
export function encodeCursor(c: SearchCursor): string {
  return Buffer.from(JSON.stringify([c.us, c.module, c.id])).toString('base64url');
}

/** @throws {ValidationError} for anything but a cursor this module made. */
export function decodeCursor(raw: string): SearchCursor {
  try {
    const parsed: unknown = JSON.parse(Buffer.from(raw, 'base64url').toString('utf8'));
    if (Array.isArray(parsed) && parsed.length === 3) {
      const [us, module, id] = parsed as unknown[];
      if (Number.isSafeInteger(us) && typeof module === 'string' && isUuid(id))
        return { us: us as number, module, id };
    }
  } catch {
    // fall through: not base64url JSON
  }
  throw new ValidationError('invalid cursor', [
    { path: 'cursor', message: 'use nextCursor from a previous page of the same search' },
  ]);
}

/** A timestamptz literal with microseconds, exactly `us` (JS dates stop at milliseconds). */
export function timestampOfMicros(us: number): string {
  const seconds = Math.floor(us / 1_000_000);
  const fraction = String(us - seconds * 1_000_000).padStart(6, '0');
  return `${new Date(seconds * 1_000).toISOString().slice(0, 19)}.${fraction}Z`;
}

/** Sort order of the search: newest first, then module, then id (uuids compare as their text). */
export function compareKeys(a: SearchCursor, b: SearchCursor): number {
  if (a.us !== b.us) return b.us - a.us;
  if (a.module !== b.module) return a.module < b.module ? -1 : 1;
  return a.id === b.id ? 0 : a.id < b.id ? -1 : 1;
}
