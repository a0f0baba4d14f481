-- #15 event-time watermarks: per partition, the largest event time of a valid event stored
-- and the watermark (that minus the ingest's out-of-orderness bound, never moving back),
-- written by the same statement, in the same transaction, as the partition's next offset.
-- `updated_at` stays the time a batch last stored a message of the partition (idleness).
ALTER TABLE ingest_offsets
    ADD COLUMN max_event_time timestamptz,
    ADD COLUMN watermark timestamptz;
