import { Partitioners, type ICustomPartitioner, type Message, type RecordMetadata } from 'kafkajs';

/**
 * kafkajs's default partitioner (murmur2 of the key; round-robin without one) that also writes the
 * partition it chose into the message, so a send knows afterwards where each message had to go — and
 * a retry inside kafkajs keeps it there.
 */
export const pinningPartitioner: ICustomPartitioner = () => {
  const choose = Partitioners.DefaultPartitioner();
  return (args) => {
    const partition = choose(args);
    args.message.partition = partition;
    return partition;
  };
};

/** A send that kafkajs reported done although some partitions never acknowledged their messages. */
export class KafkaUnacknowledgedError extends Error {
  override readonly name = 'KafkaUnacknowledgedError';
  readonly code = 'kafka.unacknowledged';
  constructor(
    readonly topic: string,
    readonly partitions: readonly number[],
  ) {
    super(
      `kafka send resolved without an acknowledgement for ${topic} partition(s) ${partitions.join(', ')}: ` +
        'treated as failed and sent again',
    );
  }
}

/**
 * Throws {@link KafkaUnacknowledgedError} unless every partition `messages` were pinned to (see
 * {@link pinningPartitioner}) is acknowledged without error in `acks`.
 *
 * Why: kafkajs 2.2.4 keeps the answers of one send per broker across its retries. When a broker dies
 * mid-send, its partitions move to a broker that already answered for other partitions of the same
 * send; the retry then skips that broker and `send` resolves although those messages were never
 * produced (tulios/kafkajs#1303, fix proposed in #1798). The outbox relay would mark them published:
 * events lost. Found by test/chaos/kafka-cluster.test.ts (kill -9 of a leader at replication factor 3).
 */
export function assertAcknowledged(
  topic: string,
  messages: readonly Message[],
  acks: readonly RecordMetadata[],
): void {
  const acknowledged = new Set(
    acks.filter((a) => a.topicName === topic && a.errorCode === 0).map((a) => a.partition),
  );
  const expected = new Set(messages.flatMap((m) => (m.partition === undefined ? [] : [m.partition])));
  const missing = [...expected].filter((p) => !acknowledged.has(p)).sort((a, b) => a - b);
  if (missing.length > 0) throw new KafkaUnacknowledgedError(topic, missing);
}
