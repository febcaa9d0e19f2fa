"""`pacore report`: the paper's evaluation of one or more campaigns, side by side (Table 1 style).

Per campaign (a setting: its rounds K and budgets):
- accuracy = pass@1: each finished run's final answer graded against the problem's ground truth
  (pacore.results.grading: math-verify), averaged over the runs of a problem, then over problems;
- the majority-vote baseline: self-consistency over the round-1 conclusions of the same runs (the
  most common extracted answer of the K1 messages, ties to the earliest), graded the same way, at the
  TTC of round 1 alone;
- the no-answer rate (finished runs whose final message has no extractable answer);
- TTC: the completion tokens of every trajectory a run's rounds use (with a round-1 pool, the K1 pool
  trajectories it sampled count in full for each run that uses them, as if generated for it: the
  paper's accounting; what the campaign spent, pool once, is `pacore status`'s `used`); per problem
  the mean over its runs; reported as mean and quantiles over problems, in thousands;
- per round: answer agreement (the share of a round's trajectories whose answer is the round's most
  common one, averaged over runs) and compaction health (the share of trajectories that gave no
  reference: empty content, cut inside the reasoning, or failed).
Runs that did not finish (budget exhausted, failed, cancelled) count as incorrect in accuracy, as in a
fixed-budget evaluation; `runs_graded` says how many finished.
"""

from __future__ import annotations

import random
import statistics
from collections import Counter, defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pacore.campaigns.status import find_campaign
from pacore.core.answers import extract_boxed
from pacore.core.vocabulary import RunStatus
from pacore.results.grading import CORRECT, NO_ANSWER, grade_many
from pacore.store.store import Store

BOOTSTRAP_RESAMPLES = 2000


def campaign_report(
    store: Store, name: str, workers: int | None = None, progress: Callable[[int, int], None] | None = None
) -> dict[str, Any]:
    """`progress(graded, total)` is called as the answers are graded (the long part of a large report)."""
    campaign = find_campaign(store, name)
    runs = store.report_runs(campaign.id)
    archived_to, purged_at = store.archive_state(campaign.id)
    purged = purged_at is not None  # the trajectories' text is gone: only the archive has it
    rounds = {} if purged else _round_messages(store, campaign.id)
    round1 = store.round_one_tokens(campaign.id)
    votes = {run_id: _majority(messages.get(1, [])) for run_id, messages in rounds.items()}
    finished = [r for r in runs if r.status in (RunStatus.DONE, RunStatus.NO_CONCLUSION)]
    items = [(r.final_message, r.truth) for r in finished] + [
        (_boxed(votes.get(r.run_id)), r.truth) for r in runs
    ]
    verdicts = grade_many(
        items, workers, progress=None if progress is None else (lambda n: progress(n, len(items)))
    )
    final = {r.run_id: v for r, v in zip(finished, verdicts[: len(finished)], strict=True)}
    voted = {r.run_id: v for r, v in zip(runs, verdicts[len(finished) :], strict=True)}

    per_problem: dict[str, list[bool]] = defaultdict(list)
    per_problem_vote: dict[str, list[bool]] = defaultdict(list)
    ttc: dict[str, list[int]] = defaultdict(list)
    ttc_round1: dict[str, list[int]] = defaultdict(list)
    for run in runs:
        per_problem[run.problem_id].append(run.run_id in final and final[run.run_id].grade == CORRECT)
        per_problem_vote[run.problem_id].append(voted[run.run_id].grade == CORRECT)
        ttc[run.problem_id].append(int(run.ttc))
        ttc_round1[run.problem_id].append(round1.get(run.run_id, 0))
    ttc_per_problem = [statistics.fmean(v) for v in ttc.values()]
    config = campaign.config
    return {
        "campaign": name,
        "model": config["model"],
        "setting": ",".join(map(str, [*config["rounds"], 1])),
        "problem_budget": campaign.problem_budget,
        "problems": len(per_problem),
        "runs": len(runs),
        "runs_graded": len(finished),
        "accuracy": _mean_of_means(per_problem),
        "accuracy_ci95": bootstrap_ci95([sum(v) / len(v) for v in per_problem.values()]),
        "majority_vote_accuracy": None if purged else _mean_of_means(per_problem_vote),
        "majority_vote_ci95": None
        if purged
        else bootstrap_ci95([sum(v) / len(v) for v in per_problem_vote.values()]),
        "majority_vote_k": config["rounds"][0],
        "majority_vote_ttc_mean": statistics.fmean(statistics.fmean(v) for v in ttc_round1.values())
        if ttc_round1
        else 0.0,
        "no_answer_rate": sum(v.grade == NO_ANSWER for v in final.values()) / len(final) if final else 0.0,
        "ttc_mean": statistics.fmean(ttc_per_problem) if ttc_per_problem else 0.0,
        "ttc_quantiles": _quantiles(ttc_per_problem),
        "rounds": _round_health(rounds),
        "text_purged": (
            f"the trajectories' text was purged after archiving to {archived_to}: the majority vote and the "
            "per-round health need it (they are in the archive)"
            if purged
            else None
        ),
    }


def bootstrap_ci95(values: list[float], resamples: int = BOOTSTRAP_RESAMPLES) -> list[float] | None:
    """The 95% percentile-bootstrap interval of the mean of `values` (per-problem accuracies: problems are
    the unit that varies), with a fixed seed so a report is reproducible; None without values."""
    if not values:
        return None
    rng = random.Random(0)
    n = len(values)
    means = sorted(statistics.fmean(rng.choices(values, k=n)) for _ in range(resamples))
    return [means[int(0.025 * resamples)], means[int(0.975 * resamples) - 1]]


def _boxed(answer: str | None) -> str | None:
    return None if answer is None else f"\\boxed{{{answer}}}"


def _mean_of_means(groups: dict[str, list[bool]]) -> float:
    return statistics.fmean(sum(v) / len(v) for v in groups.values()) if groups else 0.0


def _quantiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    ordered = sorted(values)

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    return {"p10": at(0.1), "p50": at(0.5), "p90": at(0.9), "max": ordered[-1]}


def _round_messages(store: Store, campaign_id: int) -> dict[int, dict[int, list[str | None]]]:
    """Per run, per round index: the references of its trajectories, in position order."""
    out: dict[int, dict[int, list[str | None]]] = defaultdict(lambda: defaultdict(list))
    for run_id, index, message in store.round_references(campaign_id):
        out[run_id][index].append(message)
    return out


def _majority(messages: list[str | None]) -> str | None:
    """The most common extracted answer (ties: the one that appears first), or None."""
    answers = [a for a in (extract_boxed(m) for m in messages) if a is not None]
    if not answers:
        return None
    counts = Counter(answers)
    best = max(counts.values())
    return next(a for a in answers if counts[a] == best)


def _round_health(rounds: dict[int, dict[int, list[str | None]]]) -> list[dict[str, Any]]:
    by_index: dict[int, list[list[str | None]]] = defaultdict(list)
    for messages in rounds.values():
        for index, batch in messages.items():
            by_index[index].append(batch)
    health = []
    for index in sorted(by_index):
        batches = by_index[index]
        agreement = []
        for batch in batches:
            answers = [extract_boxed(m) for m in batch]
            counted = Counter(a for a in answers if a is not None)
            if counted:
                agreement.append(max(counted.values()) / len(batch))
        total = sum(len(b) for b in batches)
        missing = sum(m is None for b in batches for m in b)
        health.append(
            {
                "round": index,
                "trajectories": total,
                "answer_agreement": statistics.fmean(agreement) if agreement else None,
                "no_message_share": missing / total if total else 0.0,
            }
        )
    return health


def plot(reports: list[dict[str, Any]], path: Path) -> dict[str, Any]:
    """Accuracy against TTC (thousands of tokens per problem, log scale): one point per campaign with its
    95% bootstrap interval over problems, labelled with its rounds (K per round), and the majority vote of
    each campaign's round 1 (majority@K1) as its own series; points are not joined (settings are not a
    sequence). The title names the model(s) and the campaigns. Returns the series drawn."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = {
        "PaCoRe": [
            (r["ttc_mean"] / 1000, r["accuracy"] * 100, r["setting"], r["accuracy_ci95"]) for r in reports
        ],
        "majority@K1 (round 1)": [
            (
                r["majority_vote_ttc_mean"] / 1000,
                r["majority_vote_accuracy"] * 100,
                f"K1={r['majority_vote_k']}",
                r["majority_vote_ci95"],
            )
            for r in reports
            if r["majority_vote_accuracy"] is not None
        ],
    }
    figure, axes = plt.subplots(figsize=(6.4, 4.6), dpi=120)
    for (label, points), marker in zip(series.items(), ("o", "s"), strict=True):
        if not points:
            continue
        low = [y - ci[0] * 100 if ci else 0.0 for _, y, _, ci in points]
        high = [ci[1] * 100 - y if ci else 0.0 for _, y, _, ci in points]
        axes.errorbar(
            [p[0] for p in points],
            [p[1] for p in points],
            yerr=[low, high],
            fmt=marker,
            capsize=3,
            label=f"{label}, 95% bootstrap CI over problems",
        )
        for x, y, name, _ in points:
            axes.annotate(name, (x, y), textcoords="offset points", xytext=(5, 4), fontsize=8)
    axes.set_xscale("log")
    axes.set_ylim(0, 100)
    axes.set_xlabel("TTC per problem (thousands of tokens, log scale)")
    axes.set_ylabel("accuracy (pass@1, %)")
    models = sorted({r["model"] for r in reports})
    campaigns = ", ".join(r["campaign"] for r in reports)
    axes.set_title(f"{', '.join(models)} on {campaigns}", fontsize=9)
    axes.grid(alpha=0.3, which="both")
    axes.legend(fontsize=8, loc="lower right")
    figure.tight_layout()
    figure.savefig(path, format="png")
    plt.close(figure)
    return {label: [[x, y, name, ci] for x, y, name, ci in points] for label, points in series.items()}
