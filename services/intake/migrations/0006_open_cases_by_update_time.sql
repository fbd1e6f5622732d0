-- The duplicate candidates of a new report are its customer's 100 most recently updated open
-- cases (IntakeRepository.candidatesSQL). With an index on customer_id alone, PostgreSQL fetched
-- every open case of the customer and sorted them to keep 100; this index hands them over in
-- order, so the read stops at 100 and sorts nothing. It serves every other lookup of a customer's
-- open cases as the old one did.
CREATE INDEX cases_customer_open_recent ON cases (customer_id, update_time DESC) WHERE state = 'OPEN';
DROP INDEX cases_customer_open;
