"""Delivery: the ledger of (issue, subscriber) rows, and the workers that send them.

How a send goes (RELIABILITY.md says why):

0. `preflight.check_before_send` (run by `chapar digest send` and the automatic
   send) refuses to start when the DKIM key or the relay (connection, TLS, AUTH)
   cannot work; failures like these during a send are kept in `health` for
   `chapar status`, until a message goes out.
1. `control.start_and_ring` moves a draft issue to sending and writes one ledger
   row per confirmed subscriber in one INSERT ... SELECT (`ledger.start_send`),
   commits, runs ANALYZE on PostgreSQL (the claim needs statistics for the new
   rows), then rings `chapar.send_batch(issue_id)` a few times. Messages carry
   the issue id only.
2. A worker (`sender.DeliveryAgent`) claims up to `send_batch_size` due rows
   (`ledger.claim_batch`: rows due again with FOR UPDATE SKIP LOCKED, then fresh
   rows after the issue's cursor, not written): one `delivery_claims` row holds
   their ids and the lease, on the database's clock, renewed while the pool
   process lives. Then per chunk of 30:
   marks them `sending` in the same transaction that records the previous chunk,
   sends them over its persistent, pipelining SMTP connection (`transport`) with
   bytes joined from a message built once per issue (`message`), and records each
   row's outcome.
3. Outcomes: 2xx sent; 4xx, or a connection lost before the final "." reached the
   kernel, deferred with back-off in `next_attempt_at` until `give_up_at`, then
   failed; 5xx failed, and a "no such mailbox" marks the subscriber bounced; a 421
   also pauses its receiving domain for every worker (`throttle`).
4. The stated policy for uncertain outcomes - a connection lost after the "." was
   written, or a worker that died with rows `sending` (found by the sweeper when
   their lease runs out): every such event adds one to the row's
   `uncertain_count`, so every possible duplicate is on record. With
   CHAPAR_RESEND_UNCERTAIN=true (the default, at-least-once) the row is retried
   and a reader may get a second copy with the same Message-ID; with false
   (at-most-once) the row stays `uncertain` for ops to decide
   (`chapar digest retry-failed` does not touch it).
5. Beat's lease recovery (`sweeper.recover`, every few seconds) takes back the
   rows of a worker that died once its short lease ran out; the sweeper (every
   minute) also settles give-up times, finishes issues with no pending row, and
   rings again for issues with due rows, so a broker that lost every message only
   delays a send. A worker that loses the database keeps what it sent and writes
   it when the database answers (sender.py says why that is safe).

Emails outside a digest (confirmations, and later invitations, test sends, alerts)
go through `outbox.send_email`: the same transport, HELO, TLS policy and DKIM, with
a signed VERP return path that names their subscriber.
"""
