"""Re-driving lost work is a pure decision over rows."""

from pacore.core.reconcile import AdvanceRound, Redrive, Republish, RoundRow, TrajectoryRow, reconcile


def test_single_box_sweep_treats_every_running_row_as_orphaned() -> None:
    trajectories = [
        TrajectoryRow(1, 10, "running", 1),
        TrajectoryRow(2, 10, "pending", 2),
        TrajectoryRow(3, 10, "done", 1),
    ]
    assert reconcile([], trajectories, orphan_all_running=True) == [Redrive(1, 10, 1), Republish(2, 10, 2)]


def test_fleet_mode_redrives_only_expired_leases_and_stale_publications() -> None:
    trajectories = [
        TrajectoryRow(1, 10, "running", 3, lease_expired=False),
        TrajectoryRow(2, 10, "running", 1, lease_expired=True),
        TrajectoryRow(3, 10, "pending", 1),
        TrajectoryRow(4, 10, "pending", 2, publish_stale=True),
    ]
    assert reconcile([], trajectories) == [Redrive(2, 10, 1), Republish(4, 10, 2)]


def test_expired_leases_wait_while_leases_cannot_be_trusted() -> None:
    """After the reconciler itself could not reach the database, heartbeats could not either: an
    expired lease then says nothing about the worker."""
    trajectories = [
        TrajectoryRow(2, 10, "running", 1, lease_expired=True),
        TrajectoryRow(4, 10, "pending", 2, publish_stale=True),
    ]
    assert reconcile([], trajectories, trust_leases=False) == [Republish(4, 10, 2)]
    assert reconcile([], trajectories, orphan_all_running=True, trust_leases=False)[0] == Redrive(2, 10, 1)


def test_a_lost_queue_republishes_every_pending_trajectory() -> None:
    trajectories = [TrajectoryRow(3, 10, "pending", 1), TrajectoryRow(1, 10, "running", 1)]
    assert reconcile([], trajectories, queue_lost=True) == [Republish(3, 10, 1)]


def test_finished_rounds_that_did_not_advance_are_advanced() -> None:
    rounds = [RoundRow(10, "generating", 0), RoundRow(11, "generating", 2), RoundRow(12, "done", 0)]
    assert reconcile(rounds, []) == [AdvanceRound(10)]


def test_nothing_to_do() -> None:
    assert (
        reconcile([RoundRow(1, "done", 0)], [TrajectoryRow(1, 1, "done", 1)], orphan_all_running=True) == []
    )
