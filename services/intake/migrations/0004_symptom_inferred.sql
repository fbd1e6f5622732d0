-- Whether a report's symptom was inferred from its text rather than given by the agent: an
-- inferred symptom that conflicts with another report's lowers the duplicate score but never
-- vetoes the match. Rows written before this migration keep the stricter behaviour (given).
ALTER TABLE reports ADD COLUMN symptom_inferred boolean NOT NULL DEFAULT false;
