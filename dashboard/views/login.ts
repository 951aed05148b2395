import { html } from 'hono/html';
import type { DashboardSession } from '../auth/sessions.ts';
import { BASE_PATH } from '../context.ts';
import { csrfField, type Html } from './layout.ts';

/** The login form; `error` is one of our own fixed messages, never echoed input. */
export function loginView(options: { error?: string; user?: string } = {}): Html {
  return html`<div class="login">
    <h1>Sign in</h1>
    ${options.error ? html`<div class="notice error" role="alert">${options.error}</div>` : ''}
    <form method="post" action="${BASE_PATH}/login">
      <label
        >User name <input name="username" autocomplete="username" required value="${options.user ?? ''}"
      /></label>
      <label
        >Password <input name="password" type="password" autocomplete="current-password" required
      /></label>
      <button type="submit">Sign in</button>
    </form>
  </div>`;
}

/** Confirmation for Bull Board's "Log out" link: logging out is a POST with the session's CSRF token. */
export function logoutView(session: DashboardSession): Html {
  return html`<div class="login">
    <h1>Log out</h1>
    <p>Signed in as <strong>${session.user}</strong> (${session.role}).</p>
    <form method="post" action="${BASE_PATH}/logout">
      ${csrfField(session)}
      <button type="submit">Log out</button>
    </form>
  </div>`;
}
