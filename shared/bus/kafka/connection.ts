import { hostname } from 'node:os';
import type { KafkaConfig, SASLOptions } from 'kafkajs';

/** SASL credentials for a real cluster (`KAFKA_SASL_*`). */
export interface KafkaSasl {
  mechanism: 'plain' | 'scram-sha-256' | 'scram-sha-512';
  username: string;
  password: string;
}

/** How a client reaches the cluster: bootstrap brokers, and TLS/SASL when the cluster wants them. */
export interface KafkaConnection {
  brokers: readonly string[];
  clientId: string;
  /** TLS to the brokers with the system trust store (`KAFKA_SSL`). @defaultValue false */
  ssl?: boolean | undefined;
  sasl?: KafkaSasl | undefined;
}

/**
 * The kafkajs client options of a {@link KafkaConnection}: every Kafka client of the process (the
 * bus, an admin, a lag reader) should be built from these, or it cannot talk to a TLS/SASL cluster.
 * @example
 * const kafka = new Kafka({ ...kafkaClientOptions(config.bus.kafka), logLevel: logLevel.NOTHING });
 */
export function kafkaClientOptions(connection: KafkaConnection): KafkaConfig {
  const sasl: SASLOptions | undefined = connection.sasl && {
    mechanism: connection.sasl.mechanism,
    username: connection.sasl.username,
    password: connection.sasl.password,
  };
  return {
    clientId: connection.clientId,
    brokers: [...connection.brokers],
    ...(connection.ssl ? { ssl: true } : {}),
    ...(sasl ? { sasl } : {}),
  };
}

/** What tells this process's producer apart from every other replica's: host (pod) name and pid. */
export interface ReplicaIdentity {
  hostname: string;
  pid: number;
}

export function currentReplica(): ReplicaIdentity {
  return { hostname: hostname(), pid: process.pid };
}

/**
 * The fallback transactional id of one producer of one replica — used only when the bus has neither
 * Redis to lease a slot nor a fixed slot (see `transactional-slot.ts`): `<base>-<hostname>-<pid>`, plus
 * `-<n>` for the n-th transactional bus of the same process (tests run several). A Deployment's
 * replacement pod has a new host name, so this id never comes back after a crash: the transaction a
 * killed relay left open then blocks read-committed consumers until the broker times it out.
 *
 * Two producers sharing a transactional id fence each other: the second `InitProducerId` bumps the
 * epoch and every transaction of the first fails with PRODUCER_FENCED from then on. Every relay
 * replica gets the same `KAFKA_TRANSACTIONAL_ID`, so the id is made unique here. The host name is the
 * pod name in Kubernetes (the container id under Docker) and the pid tells apart replicas sharing a
 * host; in a container the pid is the same after a restart (`node` is pid 1 in the shipped manifests),
 * so a restarted replica reuses its id, fences its own zombie and aborts the transaction it left
 * open at once instead of leaving read-committed consumers behind it until the transaction times out.
 */
export function replicaTransactionalId(base: string, replica: ReplicaIdentity, nth = 1): string {
  // Transactional ids are free-form strings, but keep them readable in broker logs and tooling.
  const host = replica.hostname.replace(/[^A-Za-z0-9._-]/g, '_') || 'host';
  return `${base}-${host}-${replica.pid}${nth > 1 ? `-${nth}` : ''}`;
}
