/** Small fetch helpers for tests that talk HTTP to a real server. */
export interface JsonResponse<T = Record<string, unknown>> {
  status: number;
  headers: Headers;
  body: T;
}

export async function request<T = Record<string, unknown>>(
  url: string,
  init: RequestInit & { json?: unknown } = {},
): Promise<JsonResponse<T>> {
  const headers = new Headers(init.headers);
  // The development key (all scopes) unless the test sends its own credentials.
  if (!headers.has('authorization') && !headers.has('x-session-id'))
    headers.set('authorization', 'Bearer dev');
  let body = init.body;
  if (init.json !== undefined) {
    headers.set('content-type', headers.get('content-type') ?? 'application/json');
    body = JSON.stringify(init.json);
  }
  const res = await fetch(url, { ...init, headers, body });
  const text = await res.text();
  let parsed: unknown = text;
  try {
    parsed = text ? JSON.parse(text) : null;
  } catch {
    /* not JSON: keep the text */
  }
  return { status: res.status, headers: res.headers, body: parsed as T };
}

export const sampleOrder = (over: Record<string, unknown> = {}) => ({
  customerId: 'c-42',
  currency: 'EUR',
  items: [{ sku: 'sku-1', quantity: 2, unitPriceCents: 1250 }],
  ...over,
});
