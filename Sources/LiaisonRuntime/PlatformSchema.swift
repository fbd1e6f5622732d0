import LiaisonStorage

/// Tables every service owns for the platform mechanisms (outbox, idempotency keys, inbox).
/// Applied before the service's own migrations, in the `platform` namespace of
/// `schema_migrations`, so that the five services do not each copy this SQL.
public enum PlatformSchema {
    public static let namespace = "platform"

    public static let migrations: [Migration] = [
        Migration(version: 1, name: "outbox_idempotency_inbox", sql: """
            -- Transactional outbox: one row per event and destination, written in the same
            -- transaction as the change it describes; a relay delivers it at least once.
            CREATE TABLE outbox (
                id              bigserial   PRIMARY KEY,
                event_id        uuid        NOT NULL,
                destination     text        NOT NULL,
                topic           text        NOT NULL,
                payload         bytea       NOT NULL,
                created_at      timestamptz NOT NULL DEFAULT now(),
                state           text        NOT NULL DEFAULT 'pending'
                                CHECK (state IN ('pending', 'delivered', 'dead')),
                attempts        integer     NOT NULL DEFAULT 0,
                next_attempt_at timestamptz NOT NULL DEFAULT now(),
                lease_owner     text,
                lease_until     timestamptz,
                last_error      text,
                delivered_at    timestamptz,
                UNIQUE (event_id, destination)
            );
            CREATE INDEX outbox_due ON outbox (next_attempt_at, id) WHERE state = 'pending';

            -- request_id store: a replay returns the stored response; the same id with another
            -- request is refused.
            CREATE TABLE idempotency_keys (
                scope       text        NOT NULL,
                request_id  text        NOT NULL,
                fingerprint text        NOT NULL,
                response    bytea       NOT NULL,
                created_at  timestamptz NOT NULL DEFAULT now(),
                PRIMARY KEY (scope, request_id)
            );
            CREATE INDEX idempotency_keys_created ON idempotency_keys (created_at);

            -- Inbox: ids of events this service applied, written with the effect.
            CREATE TABLE inbox (
                consumer   text        NOT NULL,
                event_id   uuid        NOT NULL,
                applied_at timestamptz NOT NULL DEFAULT now(),
                PRIMARY KEY (consumer, event_id)
            );
            """),
        Migration(version: 2, name: "outbox_pending_by_destination", sql: """
            -- The relay claims each destination's due rows in id order through this index, so a
            -- paused destination's backlog is never scanned.
            CREATE INDEX outbox_pending_destination ON outbox (destination, id) WHERE state = 'pending';
            """),
        Migration(version: 3, name: "outbox_claim_by_due_time", sql: """
            -- The relay claims each destination's rows that are due, earliest first, as one range of
            -- this index. In id order (version 2) a claim walked past every row of the destination
            -- that was backing off before it reached a due one: after an outage, every row.
            CREATE INDEX outbox_pending_destination_due ON outbox (destination, next_attempt_at, id)
                WHERE state = 'pending';
            DROP INDEX outbox_pending_destination;
            """),
        Migration(version: 4, name: "inbox_purge_by_age", sql: """
            -- Housekeeping deletes applied event ids past their retention through this index.
            CREATE INDEX inbox_applied_at ON inbox (applied_at);
            """),
        Migration(version: 5, name: "outbox_dead_by_destination", sql: """
            -- OutboxGauges counts dead letters per destination through this index (the pending rows
            -- have outbox_pending_destination_due).
            CREATE INDEX outbox_dead_destination ON outbox (destination) WHERE state = 'dead';
            """),
    ]
}
