import { SQSClient } from '@aws-sdk/client-sqs';

export interface SqsClientOptions {
  /** `http://127.0.0.1:9324` (ElasticMQ), `https://sqs.eu-west-1.amazonaws.com`, a VPC endpoint… */
  endpoint: string;
  region: string;
  /**
   * Concurrent HTTP connections: every poller's long poll holds one for up to its wait time, so
   * size it above pollers + publish concurrency. @defaultValue 64
   */
  maxSockets?: number;
  /** Bound on one request, long polls included (add their wait time). @defaultValue 30_000 */
  requestTimeoutMs?: number;
}

/** Credentials of endpoints that are not AWS (ElasticMQ, LocalStack): they accept any signature. */
const PLACEHOLDER_CREDENTIALS = { accessKeyId: 'conveyor', secretAccessKey: 'conveyor' } as const;

/**
 * Whether `endpoint` is AWS itself (`*.amazonaws.com`, China's `*.amazonaws.com.cn`, VPC endpoints
 * included): only there do requests need real credentials.
 */
export function isAwsEndpoint(endpoint: string): boolean {
  const host = new URL(endpoint).hostname;
  return /(^|\.)amazonaws\.com(\.cn)?$/.test(host);
}

/**
 * An SQS client for `endpoint`. Requests go to the endpoint, never to a queue URL's host (ElasticMQ
 * names itself in its queue URLs, which a container may not reach). Credentials: the SDK's default
 * chain (environment, IRSA / EKS pod identity, instance role) on AWS; placeholders elsewhere.
 */
export function createSqsClient(options: SqsClientOptions): SQSClient {
  const requestTimeout = options.requestTimeoutMs ?? 30_000;
  return new SQSClient({
    endpoint: options.endpoint,
    region: options.region,
    ...(isAwsEndpoint(options.endpoint) ? {} : { credentials: PLACEHOLDER_CREDENTIALS }),
    useQueueUrlAsEndpoint: false,
    // The SDK's own retries (3 attempts, throttling-aware) under ours: callers see only what outlasted them.
    maxAttempts: 3,
    requestHandler: {
      connectionTimeout: 5_000,
      requestTimeout,
      throwOnRequestTimeout: true,
      httpAgent: { keepAlive: true, maxSockets: options.maxSockets ?? 64 },
      httpsAgent: { keepAlive: true, maxSockets: options.maxSockets ?? 64 },
    },
  });
}

/** What an SDK error carries that matters here (typed loosely: anything may be thrown). */
interface SdkErrorShape {
  name?: unknown;
  $fault?: unknown;
  $metadata?: { httpStatusCode?: unknown };
}

/** The SQS error code (`QueueDoesNotExist`, `AccessDenied`…) of an SDK error, else ''. */
export function sqsErrorName(err: unknown): string {
  if (typeof err !== 'object' || err === null) return '';
  const name = (err as SdkErrorShape).name;
  return typeof name === 'string' ? name : '';
}

/** The queue is gone (deleted by an operator or a test): declare it again. */
export function isQueueMissing(err: unknown): boolean {
  const name = sqsErrorName(err);
  return name === 'QueueDoesNotExist' || name === 'AWS.SimpleQueueService.NonExistentQueue';
}

/** The queue exists with other attributes: CreateQueue refuses, SetQueueAttributes converges. */
export function isQueueNameTaken(err: unknown): boolean {
  const name = sqsErrorName(err);
  return name === 'QueueNameExists' || name === 'QueueAlreadyExists';
}

/** Codes no retry changes: credentials, permissions, a request SQS will never accept. */
const PERMANENT = new Set([
  'AccessDenied',
  'AccessDeniedException',
  'InvalidClientTokenId',
  'UnrecognizedClientException',
  'SignatureDoesNotMatch',
  'InvalidSecurity',
  'KmsAccessDenied',
  'KmsDisabled',
  'KmsInvalidState',
  'KmsNotFound',
]);

/** Whether SQS refuses what no retry can change (403s, bad credentials, KMS refusals). */
export function isPermanentSqsError(err: unknown): boolean {
  if (typeof err !== 'object' || err === null) return false;
  const { $metadata } = err as SdkErrorShape;
  return PERMANENT.has(sqsErrorName(err)) || $metadata?.httpStatusCode === 403;
}

/** What SQS answers a message it will never accept (bad characters, too long, bad attributes). */
const REFUSED_MESSAGE = new Set([
  'InvalidMessageContents',
  'MessageTooLong',
  'InvalidParameterValue',
  'InvalidAttributeName',
  'InvalidAttributeValue',
  'InvalidBatchEntryId',
  'BatchRequestTooLong',
  'AWS.SimpleQueueService.InvalidMessageContents',
]);

/** Whether SQS refused to take a message for what it is: sending it again cannot succeed. */
export function isRefusedMessage(err: unknown): boolean {
  return REFUSED_MESSAGE.has(sqsErrorName(err)) || isPermanentSqsError(err);
}
