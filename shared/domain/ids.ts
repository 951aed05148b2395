import { z } from 'zod';

/** Identifiers that may become Redis keys, job ids and SQL values. */
export const IdSchema = z
  .string()
  .min(1)
  .max(64)
  .regex(/^[A-Za-z0-9][A-Za-z0-9._:-]*$/, 'letters, digits, ".", "_", ":" or "-"');

/** The id that follows one request through logs, jobs, events and read models. */
export const CorrelationIdSchema = z
  .string()
  .min(8)
  .max(128)
  .regex(/^[A-Za-z0-9._:-]+$/, 'letters, digits, ".", "_", ":" or "-"');

const Uuid = z.uuid();

/** Whether `value` is a UUID as the event schemas accept it (`z.uuid()`: version and variant digits checked). */
export function isUuid(value: unknown): value is string {
  return Uuid.safeParse(value).success;
}
