-- Each case carries what the duplicate matcher needs of its most recent reports, so that the
-- candidate read of a new report is one row per open case of its customer instead of one index
-- descent and one heap fetch per report (Sources/Intake/Repository/CaseCandidates.swift).
--
-- `cases.candidates` holds the case's 20 most recent reports (receive_time DESC, id DESC in
-- byte order), concatenated, each encoded as `intake_candidate_entry` below. Intake writes it with
-- the case when a report opens or joins a case (encoded in Swift, byte for byte the same), and
-- recomputes it with `intake_case_candidates` when reports move between cases (merge, split).
-- The invariant, checked by the tests: candidates = intake_case_candidates(id) for every case.

-- One report's entry: int8 receive time (microseconds since 1970-01-01 UTC), then id, fingerprint,
-- symptom, service_hint, ticket_system, ticket_id as int4 length + bytes (length -1 for NULL,
-- text in UTF-8), then one byte symptom_inferred (0 or 1). Integers are big-endian.
CREATE FUNCTION intake_candidate_field(value bytea) RETURNS bytea
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN value IS NULL THEN int4send(-1) ELSE int4send(octet_length(value)) || value END
$$;

CREATE FUNCTION intake_candidate_entry(id text, receive_time timestamptz, fingerprint bytea, symptom text,
                                       service_hint text, ticket_system text, ticket_id text,
                                       symptom_inferred boolean) RETURNS bytea
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT int8send((extract(epoch FROM receive_time) * 1000000)::int8)
        || intake_candidate_field(convert_to(id, 'UTF8'))
        || intake_candidate_field(fingerprint)
        || intake_candidate_field(convert_to(symptom, 'UTF8'))
        || intake_candidate_field(convert_to(service_hint, 'UTF8'))
        || intake_candidate_field(convert_to(ticket_system, 'UTF8'))
        || intake_candidate_field(convert_to(ticket_id, 'UTF8'))
        || CASE WHEN symptom_inferred THEN '\x01'::bytea ELSE '\x00'::bytea END
$$;

-- The whole column value of one case, from its reports.
CREATE FUNCTION intake_case_candidates(case_id text) RETURNS bytea
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT coalesce(string_agg(intake_candidate_entry(r.id, r.receive_time, r.fingerprint, r.symptom, r.service_hint,
                                                      r.ticket_system, r.ticket_id, r.symptom_inferred),
                               ''::bytea ORDER BY r.receive_time DESC, r.id COLLATE "C" DESC), ''::bytea)
    FROM (SELECT * FROM reports WHERE reports.case_id = intake_case_candidates.case_id
          ORDER BY receive_time DESC, id COLLATE "C" DESC LIMIT 20) r
$$;

ALTER TABLE cases ADD COLUMN candidates bytea NOT NULL DEFAULT '';
UPDATE cases SET candidates = intake_case_candidates(id) WHERE EXISTS (SELECT 1 FROM reports WHERE case_id = cases.id);
