-- sla schema starts here; platform tables (outbox, idempotency_keys, inbox) come from the runtime.
SELECT 1;
