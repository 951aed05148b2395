import { DomainError, ValidationError, type FieldError } from './domain.ts';

/** RFC 9457 problem details. */
export interface Problem {
  type: string;
  title: string;
  status: number;
  detail?: string;
  instance?: string;
  code: string;
  errors?: readonly FieldError[];
  correlationId?: string;
}

const titles: Record<number, string> = {
  400: 'Bad Request',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'Not Found',
  409: 'Conflict',
  413: 'Content Too Large',
  415: 'Unsupported Media Type',
  422: 'Unprocessable Content',
  429: 'Too Many Requests',
  500: 'Internal Server Error',
  503: 'Service Unavailable',
};

export const PROBLEM_CONTENT_TYPE = 'application/problem+json';

/** A problem for a status with no domain error behind it (415, 413, …). */
export function problem(
  status: number,
  code: string,
  detail?: string,
  extra: Partial<Problem> = {},
): Problem {
  return {
    type: `https://conveyor.dev/problems/${code.replaceAll('.', '-')}`,
    title: titles[status] ?? 'Error',
    status,
    code,
    ...(detail === undefined ? {} : { detail }),
    ...extra,
  };
}

/** Maps any thrown value to a problem; unknown errors become a 500 with no internals leaked. */
export function toProblem(err: unknown, instance?: string): Problem {
  if (err instanceof DomainError) {
    return problem(err.status, err.code, err.message, {
      ...(instance ? { instance } : {}),
      ...(err instanceof ValidationError ? { errors: err.errors } : {}),
    });
  }
  return problem(500, 'internal', 'an unexpected error occurred', instance ? { instance } : {});
}
