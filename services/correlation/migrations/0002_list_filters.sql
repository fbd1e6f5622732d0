-- Columns and indexes behind the filters and orderings of the List methods (the contract in
-- correlation_service.proto). Every column is written by the same statement that writes `body`;
-- existing rows are backfilled here, in SQL, by reading their protobuf `body` with the small
-- protobuf field reader below (temporary functions, dropped at the end), so no row waits for its
-- next write to become filterable.

-- Top-level fields of a protobuf message: field number, wire type, varint value or raw bytes
-- (length-delimited payload, 8 bytes of a fixed64, 4 of a fixed32).
CREATE FUNCTION pg_temp.pb_fields(msg bytea)
RETURNS TABLE (num int, wire int, v numeric, d bytea, pos int)
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    i int := 0;
    n int := coalesce(length(msg), 0);
    tag numeric;
    x numeric;
    m numeric;
    c int;
    len int;
BEGIN
    pos := 0;
    WHILE i < n LOOP
        tag := 0; m := 1;
        LOOP
            c := get_byte(msg, i); i := i + 1;
            tag := tag + (c & 127) * m; m := m * 128;
            EXIT WHEN c < 128;
        END LOOP;
        num := floor(tag / 8)::int;
        wire := (tag % 8)::int;
        v := NULL; d := NULL;
        IF wire = 0 OR wire = 2 THEN
            x := 0; m := 1;
            LOOP
                c := get_byte(msg, i); i := i + 1;
                x := x + (c & 127) * m; m := m * 128;
                EXIT WHEN c < 128;
            END LOOP;
            IF wire = 0 THEN
                v := x;
            ELSE
                len := x::int;
                d := substring(msg FROM i + 1 FOR len);
                i := i + len;
            END IF;
        ELSIF wire = 1 THEN
            d := substring(msg FROM i + 1 FOR 8); i := i + 8;
        ELSIF wire = 5 THEN
            d := substring(msg FROM i + 1 FOR 4); i := i + 4;
        ELSE
            RAISE EXCEPTION 'unsupported protobuf wire type % at byte %', wire, i;
        END IF;
        pos := pos + 1;
        RETURN NEXT;
    END LOOP;
END $$;

-- Scalar readers (the last occurrence wins, as in protobuf; absent -> the proto default or NULL).
CREATE FUNCTION pg_temp.pb_int(msg bytea, field int) RETURNS bigint LANGUAGE sql IMMUTABLE AS $$
    SELECT coalesce((SELECT v FROM pg_temp.pb_fields(msg) WHERE num = field AND wire = 0 ORDER BY pos DESC LIMIT 1), 0)::bigint
$$;
CREATE FUNCTION pg_temp.pb_bytes(msg bytea, field int) RETURNS bytea LANGUAGE sql IMMUTABLE AS $$
    SELECT d FROM pg_temp.pb_fields(msg) WHERE num = field AND wire = 2 ORDER BY pos DESC LIMIT 1
$$;
CREATE FUNCTION pg_temp.pb_text(msg bytea, field int) RETURNS text LANGUAGE sql IMMUTABLE AS $$
    SELECT coalesce(convert_from(pg_temp.pb_bytes(msg, field), 'UTF8'), '')
$$;
CREATE FUNCTION pg_temp.pb_texts(msg bytea, field int) RETURNS text[] LANGUAGE sql IMMUTABLE AS $$
    SELECT coalesce(array_agg(convert_from(d, 'UTF8') ORDER BY pos), '{}')
    FROM pg_temp.pb_fields(msg) WHERE num = field AND wire = 2
$$;
-- google.protobuf.Timestamp {1: seconds, 2: nanos}, to the microsecond; NULL when absent.
CREATE FUNCTION pg_temp.pb_time(msg bytea, field int) RETURNS timestamptz LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN t IS NULL THEN NULL ELSE
        'epoch'::timestamptz + pg_temp.pb_int(t, 1) * interval '1 second'
                             + round(pg_temp.pb_int(t, 2) / 1000.0) * interval '1 microsecond' END
    FROM (SELECT pg_temp.pb_bytes(msg, field) AS t) s
$$;
-- A `double` (fixed64, IEEE 754 little-endian); 0 when absent.
CREATE FUNCTION pg_temp.pb_double(msg bytea, field int) RETURNS double precision LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE
        WHEN b IS NULL THEN 0::float8
        WHEN e = 2047 THEN CASE WHEN f <> 0 THEN 'NaN'::float8 WHEN s THEN '-Infinity'::float8 ELSE 'Infinity'::float8 END
        WHEN e = 0 THEN (CASE WHEN s THEN -1 ELSE 1 END) * f::float8 * power(2::float8, -1074)
        ELSE (CASE WHEN s THEN -1 ELSE 1 END) * (f + 4503599627370496)::float8 * power(2::float8, e - 1075)
    END
    FROM (
        SELECT b, bits >= 9223372036854775808 AS s,
               (floor(bits / 4503599627370496) % 2048)::int AS e, bits % 4503599627370496 AS f
        FROM (
            SELECT b, (SELECT sum(get_byte(b, k)::numeric * (256::numeric ^ k)) FROM generate_series(0, 7) k) AS bits
            FROM (SELECT (SELECT d FROM pg_temp.pb_fields(msg) WHERE num = field AND wire = 1 ORDER BY pos DESC LIMIT 1) AS b) x
        ) y
    ) z
$$;

-- Technical services: `public`, `owner_team`, `aliases` (has, case-folded), `dependencies` (has).
ALTER TABLE services
    ADD COLUMN public       boolean NOT NULL DEFAULT false,
    ADD COLUMN owner_team   text    NOT NULL DEFAULT '',
    ADD COLUMN aliases      text[]  NOT NULL DEFAULT '{}',
    ADD COLUMN dependencies text[]  NOT NULL DEFAULT '{}';
UPDATE services SET
    public = pg_temp.pb_int(body, 6) <> 0,
    owner_team = pg_temp.pb_text(body, 5),
    aliases = (SELECT coalesce(array_agg(lower(a) ORDER BY o), '{}') FROM unnest(pg_temp.pb_texts(body, 3)) WITH ORDINALITY u(a, o)),
    dependencies = pg_temp.pb_texts(body, 4);
CREATE INDEX services_aliases ON services USING gin (aliases);
CREATE INDEX services_dependencies ON services USING gin (dependencies);

-- Incidents: `severity`, `source`, `resolve_time`, `labels.<key>`; `update_time` for
-- "update_time desc". (`state`, `services`, `create_time`, `ext_system`/`ext_id` exist.)
ALTER TABLE incidents
    ADD COLUMN severity     int         NOT NULL DEFAULT 0,
    ADD COLUMN source       int         NOT NULL DEFAULT 0,
    ADD COLUMN resolve_time timestamptz,
    ADD COLUMN update_time  timestamptz,
    ADD COLUMN labels       jsonb       NOT NULL DEFAULT '{}';
UPDATE incidents SET
    severity = pg_temp.pb_int(body, 6),
    source = pg_temp.pb_int(body, 8),
    resolve_time = pg_temp.pb_time(body, 19),
    update_time = coalesce(pg_temp.pb_time(body, 20), create_time),
    labels = (SELECT coalesce(jsonb_object_agg(pg_temp.pb_text(d, 1), pg_temp.pb_text(d, 2)), '{}')
              FROM pg_temp.pb_fields(body) WHERE num = 21 AND wire = 2);
UPDATE incidents SET update_time = create_time WHERE update_time IS NULL;
ALTER TABLE incidents ALTER COLUMN update_time SET DEFAULT now(), ALTER COLUMN update_time SET NOT NULL;
CREATE INDEX incidents_severity ON incidents (severity, create_time DESC, id DESC);
CREATE INDEX incidents_updated ON incidents (update_time DESC, id DESC);
CREATE INDEX incidents_services ON incidents USING gin (services);
CREATE INDEX incidents_labels ON incidents USING gin (labels jsonb_path_ops);
CREATE INDEX incidents_resolved ON incidents (resolve_time) WHERE resolve_time IS NOT NULL;

-- Links: `origin`, `case`, `customer`, `symptom`, `report_receive_time` and the customer
-- snapshot attributes. (`state`, `score`, `report_id`, `create_time` exist.)
ALTER TABLE links
    ADD COLUMN origin               int         NOT NULL DEFAULT 0,
    ADD COLUMN case_name            text        NOT NULL DEFAULT '',
    ADD COLUMN customer             text        NOT NULL DEFAULT '',
    ADD COLUMN symptom              int         NOT NULL DEFAULT 0,
    ADD COLUMN report_receive_time  timestamptz,
    ADD COLUMN snapshot_region      text        NOT NULL DEFAULT '',
    ADD COLUMN snapshot_country     text        NOT NULL DEFAULT '',
    ADD COLUMN snapshot_tier        int         NOT NULL DEFAULT 0,
    ADD COLUMN snapshot_partition   text        NOT NULL DEFAULT '',
    ADD COLUMN snapshot_account     text        NOT NULL DEFAULT '',
    ADD COLUMN snapshot_white_glove boolean     NOT NULL DEFAULT false,
    ADD COLUMN snapshot_features    text[]      NOT NULL DEFAULT '{}';
UPDATE links SET
    origin = pg_temp.pb_int(body, 8),
    case_name = pg_temp.pb_text(body, 3),
    customer = pg_temp.pb_text(body, 4),
    symptom = pg_temp.pb_int(body, 6),
    report_receive_time = pg_temp.pb_time(body, 7),
    snapshot_region = pg_temp.pb_text(s, 2),
    snapshot_country = pg_temp.pb_text(s, 3),
    snapshot_tier = pg_temp.pb_int(s, 4),
    snapshot_white_glove = pg_temp.pb_int(s, 5) <> 0,
    snapshot_features = pg_temp.pb_texts(s, 6),
    snapshot_partition = pg_temp.pb_text(s, 8),
    snapshot_account = pg_temp.pb_text(s, 1)
FROM (SELECT id AS link_id, pg_temp.pb_bytes(body, 5) AS s FROM links) snap
WHERE links.id = snap.link_id;
UPDATE links SET report_receive_time = r.receive_time FROM reports r
WHERE links.report_receive_time IS NULL AND r.id = links.report_id;
UPDATE links SET report_receive_time = create_time WHERE report_receive_time IS NULL;
ALTER TABLE links ALTER COLUMN report_receive_time SET DEFAULT now(), ALTER COLUMN report_receive_time SET NOT NULL;
CREATE INDEX links_created ON links (create_time, id);
CREATE INDEX links_incident_score ON links (incident_id, score DESC, id DESC);
CREATE INDEX links_score ON links (score DESC, id DESC);
CREATE INDEX links_incident_received ON links (incident_id, report_receive_time, id);
CREATE INDEX links_received ON links (report_receive_time, id);
CREATE INDEX links_customer ON links (customer);
CREATE INDEX links_case ON links (case_name);

-- Emerging issues: `symptom`, `service`, `lift`; `customer_count` for "customer_count desc".
-- (`state`, `adjusted_p` = adjusted_p_value, `create_time` exist.)
ALTER TABLE emerging_issues
    ADD COLUMN symptom        int              NOT NULL DEFAULT 0,
    ADD COLUMN service        text             NOT NULL DEFAULT '',
    ADD COLUMN lift           double precision NOT NULL DEFAULT 0,
    ADD COLUMN customer_count bigint           NOT NULL DEFAULT 0;
UPDATE emerging_issues SET
    symptom = pg_temp.pb_int(body, 4),
    service = pg_temp.pb_text(body, 5),
    customer_count = pg_temp.pb_int(body, 7),
    lift = pg_temp.pb_double(body, 9);
CREATE INDEX emerging_p ON emerging_issues (adjusted_p, id);
CREATE INDEX emerging_created ON emerging_issues (create_time DESC, id DESC);
CREATE INDEX emerging_customers ON emerging_issues (customer_count DESC, id DESC);
CREATE INDEX emerging_state ON emerging_issues (state, adjusted_p, id);

DROP FUNCTION pg_temp.pb_double(bytea, int);
DROP FUNCTION pg_temp.pb_time(bytea, int);
DROP FUNCTION pg_temp.pb_texts(bytea, int);
DROP FUNCTION pg_temp.pb_text(bytea, int);
DROP FUNCTION pg_temp.pb_bytes(bytea, int);
DROP FUNCTION pg_temp.pb_int(bytea, int);
DROP FUNCTION pg_temp.pb_fields(bytea);
