-- The SQS event bus (EVENT_BUS=sqs) records its dead letters here like every other transport.
ALTER TABLE dead_letters DROP CONSTRAINT IF EXISTS dead_letters_transport_check;
ALTER TABLE dead_letters
  ADD CONSTRAINT dead_letters_transport_check CHECK (transport IN ('bullmq', 'kafka', 'rabbitmq', 'sqs'));
