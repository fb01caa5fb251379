-- Run by the portal in each DB slot the demo project leases (Project.seed_sql).
CREATE TABLE IF NOT EXISTS seed_info (note VARCHAR(200));
INSERT INTO seed_info (note) VALUES ('seeded by the portal');
