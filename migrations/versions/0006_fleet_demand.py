"""fleet demand: the generation slots each model's queue needs now

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06

One demand signal, defined here once and read by everything that sizes a fleet: `pacore fleet` shows
it, `pacore fleet autoscale` scales on it, and the KEDA ScaledObject in `ops/deploy/k8s` reads this view
(its query is the store's named query `demand_of_model`, verbatim). Per model, the slots needed now:

- every running trajectory (it holds a slot; one whose worker vanished needs one to be re-driven);
- every pending trajectory of a running run of an active campaign, except those waiting for budget
  (more workers cannot give them tokens; the scheduler publishes them again once a block is free, and
  they count from then);
- round 1's K for every run not started yet of an active campaign: admission holds those back only for
  want of the fleet this signal sizes (ARCHITECTURE.md §3 rule 8).

Quarantined runs, paused and cancelled campaigns, and finished work count nothing. A `--pool` campaign's
runs not started count K1 each, though they will link pool trajectories instead: an overestimate until
they start.
"""

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE VIEW fleet_demand AS
        SELECT model, sum(slots)::bigint AS slots FROM (
            SELECT c.config ->> 'model' AS model, count(*) AS slots
            FROM trajectory t JOIN campaign c ON c.id = t.campaign_id
            WHERE t.status = 'running'
            GROUP BY 1
          UNION ALL
            SELECT c.config ->> 'model', count(*)
            FROM trajectory t JOIN campaign c ON c.id = t.campaign_id
              JOIN round r ON r.id = t.round_id JOIN run ON run.id = r.run_id
            WHERE t.status = 'pending' AND t.waiting_since IS NULL
              AND run.status = 'running' AND c.status = 'active'
            GROUP BY 1
          UNION ALL
            SELECT c.config ->> 'model', sum((c.config -> 'rounds' ->> 0)::int)
            FROM run JOIN campaign c ON c.id = run.campaign_id
            WHERE run.status = 'pending' AND c.status = 'active'
            GROUP BY 1
        ) AS need
        GROUP BY model
        """
    )


def downgrade() -> None:
    op.execute("DROP VIEW fleet_demand")
