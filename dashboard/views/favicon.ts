import type { Context } from 'hono';
import { BASE_PATH } from '../context.ts';

/** Where the console's icon is served (public: the login page shows it too). */
export const FAVICON_PATH = `${BASE_PATH}/favicon.svg`;

/** A conveyor belt carrying three parcels, in the console's teal; served from our own origin. */
export const FAVICON_SVG = `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 32 32">
<rect width="32" height="32" rx="7" fill="#0f6f64"/>
<rect x="5" y="9" width="6" height="7" rx="1" fill="#fff"/>
<rect x="13" y="9" width="6" height="7" rx="1" fill="#fff" fill-opacity=".8"/>
<rect x="21" y="9" width="6" height="7" rx="1" fill="#fff" fill-opacity=".6"/>
<rect x="4" y="18" width="24" height="3" rx="1.5" fill="#fff"/>
<circle cx="8" cy="24.5" r="1.75" fill="#fff"/><circle cx="16" cy="24.5" r="1.75" fill="#fff"/>
<circle cx="24" cy="24.5" r="1.75" fill="#fff"/>
</svg>`;

/** Serves {@link FAVICON_SVG}, cacheable for a day. */
export function favicon(c: Context): Response {
  return c.body(FAVICON_SVG, 200, {
    'content-type': 'image/svg+xml; charset=utf-8',
    'cache-control': 'public, max-age=86400',
    'x-content-type-options': 'nosniff',
  });
}
