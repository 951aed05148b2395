import { loadConfigOrExit } from '../shared/config/config.ts';
import { bootstrap, exitOnStartupFailure } from '../shared/runtime/bootstrap.ts';
import { limitHeapGrowth } from './heap.ts';
import { startApi } from './server.ts';
import { MODULES } from '../modules/registry.ts';

// Old space may grow 2× over the live heap before a full GC (V8's default is up to 4×): at 5,000
// req/s the API's peak RSS measured ~200-208 MB without this, ~156-165 MB with it.
limitHeapGrowth(100);

const config = loadConfigOrExit(process.env, { modules: MODULES });
const rt = await bootstrap(config, 'api', MODULES).catch(exitOnStartupFailure);
rt.lifecycle.handleSignals(config.workers.shutdownGraceMs);
await startApi(rt).catch(exitOnStartupFailure);
