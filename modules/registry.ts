import type { ModuleDefinition } from '../shared/modules/module.ts';
import { ordersModule } from './orders/module.ts';
import { refundsModule } from './refunds/module.ts';
import { webhooksModule } from './webhooks/module.ts';

/**
 * Every command module this deployment runs, in dependency order (a module's migrations may build on
 * those above it). The entry points read this list and pass it to the core (shared/ never imports it):
 * to add a module, add its folder and one line.
 */
export const MODULES: readonly ModuleDefinition[] = [ordersModule, refundsModule, webhooksModule];
