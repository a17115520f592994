"""decisions: the chain's sequencer in the database (Postgres)

Revision ID: 20261130_decision_sequencer
Revises: 20261130_checkpoint_signatures
Create Date: 2026-11-30 13:00:00

``mayhold_append_decisions(...)``: appends one batch of decisions to the chain in one statement.
Under the chain's advisory lock (the key ``app.decisions.repository`` takes) it reads the head,
takes the time from the database's clock (never earlier than the head's ``decided_at``), numbers
the batch from the head's seq, completes each payload with that time, chains each hash exactly as
``app.decisions.chain.link_hash`` does, inserts the rows and returns the first seq and the time.

Why in the database: service processes sharing one database then extend one chain without
reading each other's head or rendering a batch again after losing a race; they wait for each
other only while one INSERT runs (see README "Replicas: one chain, a sequencer in the
database"). The caller renders everything that does not depend on the seq, the previous hash or
the time: the header up to its seq, and the payload before and after its ``decided_at`` value.

The lock key below must equal ``app.decisions.repository.CHAIN_LOCK_KEY`` (a test checks it):
writers on sessions (SQLite's path, tests) and the COPY path of large batches take the same lock.
SQLite: nothing (one process writes through sessions).
"""

from collections.abc import Sequence

from alembic import op

revision: str = "20261130_decision_sequencer"
down_revision: str | None = "20261130_checkpoint_signatures"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CHAIN_LOCK_KEY = 0x6D68_6465_6369_7369  # "mhdecisi": app.decisions.repository.CHAIN_LOCK_KEY

FUNCTION = """
CREATE FUNCTION mayhold_append_decisions(
    p_decision_id uuid[],
    p_as_of timestamptz[],
    p_policy_key text[],
    p_policy_version integer[],
    p_policy_sha256 text[],
    p_data_version bigint[],
    p_isin text[],
    p_issuer_id text[],
    p_verdict text[],
    p_may_hold boolean[],
    p_requested_by text[],
    p_requested_by_key_id uuid[],
    p_request_id text[],
    p_request text[],
    p_header_prefix text[],
    p_payload_head text[],
    p_payload_tail text[]
) RETURNS TABLE (
    first_seq bigint, decided_at timestamptz, decided_text text, lock_wait double precision
)
LANGUAGE plpgsql VOLATILE AS $fn$
#variable_conflict use_column
DECLARE
    n integer := cardinality(p_decision_id);
    v_waited timestamptz;
    v_seq bigint;
    v_prev text;
    v_head_at timestamptz;
    v_at timestamptz;
    v_text text;
    v_seqs bigint[] := '{}';
    v_payloads text[] := '{}';
    v_prevs text[] := '{}';
    v_hashes text[] := '{}';
    v_payload text;
    v_hash text;
BEGIN
    IF n IS NULL OR n = 0 THEN
        RAISE EXCEPTION 'mayhold_append_decisions: an empty batch';
    END IF;
    IF cardinality(p_as_of) <> n OR cardinality(p_policy_key) <> n
        OR cardinality(p_policy_version) <> n OR cardinality(p_policy_sha256) <> n
        OR cardinality(p_data_version) <> n OR cardinality(p_isin) <> n
        OR cardinality(p_issuer_id) <> n OR cardinality(p_verdict) <> n
        OR cardinality(p_may_hold) <> n OR cardinality(p_requested_by) <> n
        OR cardinality(p_requested_by_key_id) <> n OR cardinality(p_request_id) <> n
        OR cardinality(p_request) <> n OR cardinality(p_header_prefix) <> n
        OR cardinality(p_payload_head) <> n OR cardinality(p_payload_tail) <> n THEN
        RAISE EXCEPTION 'mayhold_append_decisions: arrays of different lengths';
    END IF;
    v_waited := clock_timestamp();
    -- Held until this transaction (the caller's one statement) commits.
    PERFORM pg_advisory_xact_lock(@CHAIN_LOCK_KEY@);
    lock_wait := extract(epoch FROM clock_timestamp() - v_waited);
    -- A new snapshot (READ COMMITTED, a volatile function): the previous holder's rows.
    SELECT d.seq, d.hash, d.decided_at INTO v_seq, v_prev, v_head_at
        FROM decisions d ORDER BY d.seq DESC LIMIT 1;
    IF NOT FOUND THEN
        v_seq := 0;
        v_prev := repeat('0', 64);
    END IF;
    -- decided_at never decreases along seq (GREATEST ignores a null head time).
    v_at := GREATEST(clock_timestamp(), v_head_at);
    -- Python's isoformat() in UTC (app.kit.canonical.rfc3339): no fraction on a whole second.
    v_text := to_char(v_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS')
        || CASE WHEN extract(microseconds FROM v_at)::bigint % 1000000 = 0 THEN ''
                ELSE '.' || to_char(v_at AT TIME ZONE 'UTC', 'US') END
        || 'Z';
    first_seq := v_seq + 1;
    FOR i IN 1..n LOOP
        v_seq := v_seq + 1;
        v_payload := p_payload_head[i] || v_text || p_payload_tail[i];
        v_hash := encode(sha256(convert_to(
            v_prev || E'\\n' || p_header_prefix[i] || v_seq::text || '}' || E'\\n'
            || p_request[i] || E'\\n' || v_payload, 'UTF8')), 'hex');
        v_seqs := v_seqs || v_seq;
        v_payloads := v_payloads || v_payload;
        v_prevs := v_prevs || v_prev;
        v_hashes := v_hashes || v_hash;
        v_prev := v_hash;
    END LOOP;
    INSERT INTO decisions (
        seq, decision_id, decided_at, as_of, policy_key, policy_version, policy_sha256,
        data_version, isin, issuer_id, verdict, may_hold, requested_by, requested_by_key_id,
        request_id, request, payload, prev_hash, hash
    )
    SELECT u.seq, u.decision_id, v_at, u.as_of, u.policy_key, u.policy_version,
        u.policy_sha256, u.data_version, u.isin, u.issuer_id, u.verdict, u.may_hold,
        u.requested_by, u.requested_by_key_id, u.request_id, u.request, u.payload,
        u.prev_hash, u.hash
    FROM unnest(
        v_seqs, p_decision_id, p_as_of, p_policy_key, p_policy_version, p_policy_sha256,
        p_data_version, p_isin, p_issuer_id, p_verdict, p_may_hold, p_requested_by,
        p_requested_by_key_id, p_request_id, p_request, v_payloads, v_prevs, v_hashes
    ) AS u(
        seq, decision_id, as_of, policy_key, policy_version, policy_sha256, data_version,
        isin, issuer_id, verdict, may_hold, requested_by, requested_by_key_id, request_id,
        request, payload, prev_hash, hash
    );
    decided_at := v_at;
    decided_text := v_text;
    RETURN NEXT;
END
$fn$
""".replace("@CHAIN_LOCK_KEY@", str(CHAIN_LOCK_KEY))

ARGUMENTS = (
    "uuid[], timestamptz[], text[], integer[], text[], bigint[], text[], text[], text[], "
    "boolean[], text[], uuid[], text[], text[], text[], text[], text[]"
)


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(FUNCTION)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"DROP FUNCTION mayhold_append_decisions({ARGUMENTS})")
