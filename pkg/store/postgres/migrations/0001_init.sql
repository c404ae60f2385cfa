-- The job store shared by the nodes of a cluster (SPEC §11).

-- Every write of a job takes a new version from this sequence, so a
-- version is never reused, not even by a job deleted and stored again
-- (a restore): an update computed from an older read never lands.
CREATE SEQUENCE secauto_jobs_version;

-- One row a job. doc is the job exactly as the file driver encodes it
-- (its jobs.json value, sealed when a keyring is configured); the other
-- columns are what listing, claiming, cleanup and recovery select on.
CREATE TABLE secauto_jobs (
    id           text COLLATE "C" PRIMARY KEY,
    status       text NOT NULL,
    created_at   timestamptz NOT NULL,
    completed_at timestamptz,
    attempt      int NOT NULL DEFAULT 0,
    node         text,
    key_id       text NOT NULL DEFAULT '',
    version      bigint NOT NULL DEFAULT nextval('secauto_jobs_version'),
    doc          bytea NOT NULL
);
CREATE INDEX secauto_jobs_created ON secauto_jobs (created_at, id);
CREATE INDEX secauto_jobs_status ON secauto_jobs (status, created_at, id);
CREATE INDEX secauto_jobs_pending ON secauto_jobs (created_at, id) WHERE status = 'pending';
CREATE INDEX secauto_jobs_running ON secauto_jobs (node) WHERE status = 'running';

-- Auxiliary records: the webhook outbox (webhook/...) and the maintenance
-- schedule. A delivery is claimed by one node at a time.
CREATE TABLE secauto_records (
    key           text COLLATE "C" PRIMARY KEY,
    value         bytea NOT NULL,
    claimed_by    text,
    claimed_until timestamptz
);

-- The live nodes; a node whose lease_until (database time) has passed is
-- dead.
CREATE TABLE secauto_nodes (
    id          text PRIMARY KEY,
    host        text,
    pid         int,
    address     text,
    started_at  timestamptz,
    lease_until timestamptz NOT NULL
);
