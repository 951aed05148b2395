// `npm run api-key -- <id> <scope>[+<scope>…]`: prints a new API key (give it to the client) and the
// API_KEYS entry (give it to the server: it holds only the key's SHA-256).
import { generateApiKey, SCOPES, type Scope } from '../shared/security/api-keys.ts';

const [id = 'client', scopeArg = 'orders:write+orders:read'] = process.argv.slice(2);
const scopes = scopeArg.split('+');
const bad = scopes.filter((s) => !(SCOPES as readonly string[]).includes(s));
if (bad.length > 0 || !/^[A-Za-z0-9._-]{1,64}$/.test(id)) {
  process.stderr.write(`usage: npm run api-key -- <id> <scope>[+<scope>…]   scopes: ${SCOPES.join(', ')}\n`);
  process.exit(2);
}
const { key, entry } = generateApiKey(id, scopes as Scope[]);
process.stdout.write(`key (for the client):     ${key}\nAPI_KEYS entry (server):  ${entry}\n`);
