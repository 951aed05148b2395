import { z } from 'zod';

/**
 * Free text a producer sends (a refund's reason, a note) travels into PostgreSQL (`text`, `jsonb`) and
 * onto every bus. Some characters cannot make that trip, and are refused at the edge with a 400 rather
 * than accepted with a 202 and stuck later:
 * - U+0000 (NUL): PostgreSQL refuses it in `text` and `jsonb`; the command could never be written.
 * - Lone surrogates (U+D800–U+DFFF without their other half): not text; `jsonb` refuses them, and
 *   UTF-8 has no encoding for them.
 * - Unicode noncharacters (U+FDD0–U+FDEF and U+xFFFE/U+xFFFF of every plane): reserved, never for
 *   interchange. SQS refuses U+FFFE and U+FFFF in a message (its allowed set stops at U+FFFD), and
 *   `JSON.stringify` does not escape them: an event carrying one would never leave the outbox there.
 * Everything else (any language, emoji, tabs and newlines, other control characters, which JSON
 * escapes on the way) is accepted.
 */
export type UnsupportedKind = 'nul' | 'lone-surrogate' | 'noncharacter';

export interface UnsupportedCharacter {
  kind: UnsupportedKind;
  /** The code point (a lone surrogate's own code unit). */
  codePoint: number;
  /** Its UTF-16 index in the text. */
  index: number;
}

/** The first character of `text` no store or broker of ours can carry, or undefined. */
export function findUnsupportedCharacter(text: string): UnsupportedCharacter | undefined {
  for (let i = 0; i < text.length; i++) {
    const unit = text.charCodeAt(i);
    if (unit === 0) return { kind: 'nul', codePoint: 0, index: i };
    if (unit >= 0xd800 && unit <= 0xdbff) {
      const next = i + 1 < text.length ? text.charCodeAt(i + 1) : -1;
      if (next < 0xdc00 || next > 0xdfff) return { kind: 'lone-surrogate', codePoint: unit, index: i };
      const codePoint = ((unit - 0xd800) << 10) + (next - 0xdc00) + 0x10000;
      if (isNoncharacter(codePoint)) return { kind: 'noncharacter', codePoint, index: i };
      i += 1;
      continue;
    }
    if (unit >= 0xdc00 && unit <= 0xdfff) return { kind: 'lone-surrogate', codePoint: unit, index: i };
    if (isNoncharacter(unit)) return { kind: 'noncharacter', codePoint: unit, index: i };
  }
  return undefined;
}

/** U+FDD0–U+FDEF, and the last two code points of every plane (U+FFFE, U+FFFF, U+1FFFE … U+10FFFF). */
export function isNoncharacter(codePoint: number): boolean {
  return (codePoint >= 0xfdd0 && codePoint <= 0xfdef) || (codePoint & 0xfffe) === 0xfffe;
}

/** `U+FFFF`, `U+1FFFE`: how the Unicode standard names a code point. */
export function codePointName(codePoint: number): string {
  return `U+${codePoint.toString(16).toUpperCase().padStart(4, '0')}`;
}

/** Why `found` is refused, for a producer to read (a 400's field error). */
export function describeUnsupported(found: UnsupportedCharacter): string {
  const at = `${codePointName(found.codePoint)} (at index ${found.index})`;
  switch (found.kind) {
    case 'nul':
      return `contains ${at}, the NUL character, which PostgreSQL cannot store`;
    case 'lone-surrogate':
      return `contains ${at}, half of a UTF-16 surrogate pair without its other half: not text any store or broker can carry`;
    case 'noncharacter':
      return found.codePoint === 0xfffe || found.codePoint === 0xffff
        ? `contains ${at}, a Unicode noncharacter no supported broker can carry (SQS refuses it)`
        : `contains ${at}, a Unicode noncharacter, reserved and never meant for interchange`;
  }
}

/**
 * A zod string of free text between `min` (default 1) and `max` characters that refuses what
 * {@link findUnsupportedCharacter} finds, naming the character:
 * `contains U+FFFF (at index 7), a Unicode noncharacter no supported broker can carry (SQS refuses it)`.
 * @example
 * const Refund = z.strictObject({ reason: freeText({ max: 500 }).optional() });
 */
export function freeText(limits: { min?: number; max: number }): z.ZodString {
  return z
    .string()
    .min(limits.min ?? 1)
    .max(limits.max)
    .superRefine((text, ctx) => {
      const found = findUnsupportedCharacter(text);
      if (found) ctx.addIssue({ code: 'custom', message: describeUnsupported(found), input: text });
    });
}
