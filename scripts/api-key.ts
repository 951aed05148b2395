// `npm run api-key -- <id> <scope>[+<scope>…] [<writes>/<reads>]`: prints a new API key (give it to the
// client) and the API_KEYS entry (give it to the server: it holds only the key's SHA-256). The optional
// limits are the key's own budgets per RATE_LIMIT_WINDOW_MS (a side left empty keeps RATE_LIMIT_MAX /
// RATE_LIMIT_READ_MAX), e.g. `npm run api-key -- shop orders:write+orders:read 5000/20000`.
import { MODULES } from '../modules/registry.ts';
import { generateApiKey, knownScopes, parseApiKeys, type Scope } from '../shared/security/api-keys.ts';

const SCOPES = knownScopes(MODULES);

const usage = `usage: npm run api-key -- <id> <scope>[+<scope>…] [<writes>/<reads>]   scopes: ${SCOPES.join(', ')}\n`;
const [id = 'client', scopeArg = 'orders:write+orders:read', limitsArg, ...extra] = process.argv.slice(2);
const { key, entry } = generateApiKey(id, scopeArg.split('+') as Scope[]);
const full = limitsArg === undefined ? entry : `${entry}:${limitsArg}`;
try {
  if (extra.length > 0) throw new Error(`unexpected arguments: ${extra.join(' ')}`);
  if (limitsArg !== undefined && /[:,]/.test(limitsArg))
    throw new Error('the limits must be <writes>/<reads>');
  parseApiKeys(full, SCOPES); // the server's own validation: what it would refuse at start is refused here
} catch (err) {
  process.stderr.write(`${(err as Error).message.replace(/^API_KEYS entry 1( \([^)]*\))?: /, '')}\n${usage}`);
  process.exit(2);
}
process.stdout.write(`key (for the client):     ${key}\nAPI_KEYS entry (server):  ${full}\n`);
