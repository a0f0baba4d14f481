-- The UPI pipeline's tables. Column names follow the seed stack (txn_id, payer, payee,
-- amount, status, event_time; daily_upi_summary and merchant_upi_summary as they were) so
-- existing dashboards and queries keep working.

-- Every message as received: the audit trail. (topic, partition, offset) is unique, so a
-- message is stored at most once whatever happens to the consumer.
CREATE TABLE raw_upi_transactions (
    kafka_topic     text NOT NULL,
    kafka_partition integer NOT NULL,
    kafka_offset    bigint NOT NULL,
    kafka_timestamp timestamptz,
    payload         text NOT NULL,
    -- Filled when the payload parses far enough to have them.
    txn_id          text,
    event_time      timestamptz,
    valid           boolean NOT NULL,
    received_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (kafka_topic, kafka_partition, kafka_offset)
);
CREATE INDEX raw_upi_transactions_txn_id ON raw_upi_transactions (txn_id);
CREATE INDEX raw_upi_transactions_event_time ON raw_upi_transactions (event_time);

-- One row per transaction: the latest event by event time wins (ties: the later offset).
CREATE TABLE clean_upi_transactions (
    txn_id          text PRIMARY KEY,
    payer           text NOT NULL,
    payee           text NOT NULL,
    amount          numeric(12, 2) NOT NULL CHECK (amount > 0 AND amount <= 100000),
    status          text NOT NULL CHECK (status IN ('SUCCESS', 'FAILED', 'PENDING')),
    event_time      timestamptz NOT NULL,
    kafka_partition integer NOT NULL,
    kafka_offset    bigint NOT NULL,
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX clean_upi_transactions_event_time ON clean_upi_transactions (event_time);
CREATE INDEX clean_upi_transactions_status ON clean_upi_transactions (status);
CREATE INDEX clean_upi_transactions_payee ON clean_upi_transactions (payee);

-- Messages that failed validation, with why; nothing is dropped silently.
CREATE TABLE dead_letter_upi_transactions (
    kafka_topic     text NOT NULL,
    kafka_partition integer NOT NULL,
    kafka_offset    bigint NOT NULL,
    payload         text NOT NULL,
    reason          text NOT NULL,
    received_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (kafka_topic, kafka_partition, kafka_offset)
);

-- Exactly once: the next offset to read per partition, written in the same transaction as
-- the rows it covers. The consumer seeks here on start and on every rebalance.
CREATE TABLE ingest_offsets (
    consumer_group  text NOT NULL,
    kafka_topic     text NOT NULL,
    kafka_partition integer NOT NULL,
    next_offset     bigint NOT NULL,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer_group, kafka_topic, kafka_partition)
);

-- Consumer lag per partition as last seen by an ingest process (for the UI and the CLI).
CREATE TABLE ingest_lag (
    consumer_group  text NOT NULL,
    kafka_topic     text NOT NULL,
    kafka_partition integer NOT NULL,
    high_watermark  bigint NOT NULL,
    next_offset     bigint NOT NULL,
    lag             bigint NOT NULL,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer_group, kafka_topic, kafka_partition)
);

-- Liveness of ingest processes, so a supervisor elsewhere can tell one is running.
CREATE TABLE ingest_instances (
    instance_id     text PRIMARY KEY,
    consumer_group  text NOT NULL,
    kafka_topic     text NOT NULL,
    started_at      timestamptz NOT NULL DEFAULT now(),
    heartbeat_at    timestamptz NOT NULL DEFAULT now(),
    events_total    bigint NOT NULL DEFAULT 0,
    events_per_sec  double precision NOT NULL DEFAULT 0,
    stopped_at      timestamptz
);

-- Staging (dbt's stg_upi_transactions): clean rows with derived fields, per IST day.
CREATE TABLE stg_upi_transactions (
    txn_id      text PRIMARY KEY,
    payer       text NOT NULL,
    payee       text NOT NULL,
    amount      numeric(12, 2) NOT NULL,
    status      text NOT NULL,
    event_time  timestamptz NOT NULL,
    txn_date    date NOT NULL,
    payer_bank  text NOT NULL,
    merchant_id text NOT NULL,
    loaded_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX stg_upi_transactions_txn_date ON stg_upi_transactions (txn_date);

-- Marts: one row per day.
CREATE TABLE fact_upi_aggregates (
    txn_date        date PRIMARY KEY,
    total_txns      bigint NOT NULL,
    success_txns    bigint NOT NULL,
    failed_txns     bigint NOT NULL,
    pending_txns    bigint NOT NULL,
    total_amount    numeric(16, 2) NOT NULL,
    success_amount  numeric(16, 2) NOT NULL,
    success_rate    numeric(7, 4),
    avg_amount      numeric(12, 2),
    min_amount      numeric(12, 2),
    max_amount      numeric(12, 2),
    distinct_payers bigint NOT NULL,
    distinct_payees bigint NOT NULL,
    distinct_banks  bigint NOT NULL,
    updated_at      timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE daily_upi_summary (
    date         date PRIMARY KEY,
    total_txns   bigint NOT NULL,
    success_txns bigint NOT NULL,
    failed_txns  bigint NOT NULL,
    pending_txns bigint NOT NULL,
    total_amount numeric(16, 2) NOT NULL,
    updated_at   timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE merchant_upi_summary (
    merchant   text NOT NULL,
    date       date NOT NULL,
    total_txns bigint NOT NULL,
    amount     numeric(16, 2) NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (merchant, date)
);

CREATE TABLE dim_merchants (
    merchant_id text PRIMARY KEY,
    merchant    text NOT NULL UNIQUE,
    first_seen  date NOT NULL,
    last_seen   date NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- Which ingest process reads which partition. Ownership lives next to the offsets, so a
-- process that dies loses its partitions when its lease runs out (Kafka-protocol brokers
-- differ in how well their group coordinators notice dead members).
CREATE TABLE ingest_leases (
    consumer_group  text NOT NULL,
    kafka_topic     text NOT NULL,
    kafka_partition integer NOT NULL,
    owner           text,
    expires_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer_group, kafka_topic, kafka_partition)
);
