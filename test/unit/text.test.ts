import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import {
  codePointName,
  findUnsupportedCharacter,
  freeText,
  isNoncharacter,
} from '../../shared/domain/text.ts';
import { RequestRefundSchema } from '../../modules/refunds/domain.ts';

// Free text refuses what PostgreSQL cannot store (NUL), what is not text (lone surrogates) and the
// Unicode noncharacters (SQS refuses U+FFFE/U+FFFF): issue #19's refund with reason "\uffff" was
// accepted with 202 and then blocked the outbox on SQS.

const Reason = z.object({ reason: freeText({ max: 40 }) });

function messageOf(reason: string): string | undefined {
  const parsed = Reason.safeParse({ reason });
  return parsed.success ? undefined : parsed.error.issues.map((i) => i.message).join('; ');
}

describe('freeText', () => {
  it.each([
    ['\uffff', 'U+FFFF', /no supported broker can carry/],
    ['a\ufffe', 'U+FFFE', /no supported broker can carry/],
    ['\u0000', 'U+0000', /NUL.*PostgreSQL cannot store/],
    ['x\ud800', 'U+D800', /surrogate pair without its other half/],
    ['\udc00x', 'U+DC00', /surrogate pair without its other half/],
    ['\ufdd0', 'U+FDD0', /noncharacter/],
    ['\ufdef', 'U+FDEF', /noncharacter/],
    ['\u{1fffe}', 'U+1FFFE', /noncharacter/],
    ['\u{10ffff}', 'U+10FFFF', /noncharacter/],
  ])('refuses %j, naming %s', (text, name, why) => {
    const message = messageOf(text);
    expect(message).toContain(name);
    expect(message).toMatch(why);
  });

  it.each([
    'damaged on delivery',
    'Ware beschädigt',
    '壊れた 😞',
    'tab\tand\nnewline\r',
    '\u0001 other controls JSON escapes',
    '\ufdcf\ufdf0\ufffd',
    '\u{1fffd}\u{10fffd}',
    '\ud83d\ude1e',
  ])('accepts %j', (text) => {
    expect(messageOf(text)).toBeUndefined();
  });

  it('keeps its length bounds, and min defaults to 1', () => {
    expect(messageOf('')).toBeDefined();
    expect(messageOf('x'.repeat(41))).toBeDefined();
    expect(z.object({ t: freeText({ min: 0, max: 3 }) }).safeParse({ t: '' }).success).toBe(true);
  });

  it('reports the first unsupported character with its index', () => {
    expect(findUnsupportedCharacter('ok 😞 \uffff \u0000')).toEqual({
      kind: 'noncharacter',
      codePoint: 0xffff,
      index: 6,
    });
    expect(findUnsupportedCharacter('😞')).toBeUndefined();
  });

  it('names every plane’s last two code points and U+FDD0–U+FDEF as noncharacters, nothing else', () => {
    const nonchars: number[] = [];
    for (let cp = 0; cp <= 0x10ffff; cp++) if (isNoncharacter(cp)) nonchars.push(cp);
    expect(nonchars).toHaveLength(66);
    expect(nonchars.filter((cp) => cp >= 0xfdd0 && cp <= 0xfdef)).toHaveLength(32);
    expect(codePointName(0xffff)).toBe('U+FFFF');
    expect(codePointName(0x10ffff)).toBe('U+10FFFF');
  });

  it('guards the refund command’s reason (the API body and the job the worker parses)', () => {
    const parsed = RequestRefundSchema.safeParse({ amountCents: 1, reason: 'x\uffff' });
    expect(parsed.success).toBe(false);
    expect(parsed.error?.issues[0]?.path).toEqual(['reason']);
    expect(RequestRefundSchema.safeParse({ amountCents: 1 }).success).toBe(true);
  });
});
