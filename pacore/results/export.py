"""`pacore export`: one JSONL line per run, a superset of the official PaCoRe results format.

Streams: runs are read in batches, never the whole campaign at once; each batch's final answers are
graded (math-verify, in a pool of subprocesses kept for the whole export) as it goes.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

from pacore.core.compaction import Outcome, reference_kind
from pacore.core.vocabulary import RunStatus
from pacore.store.results import ExportRun, ExportTrajectory
from pacore.store.store import Store

BATCH = 200


def export_lines(store: Store, campaign_id: int, grade: bool = True) -> Iterator[str]:
    from pacore.results.grading import Grader

    pass_truncated = store.campaign_pass_truncated(campaign_id)
    with Grader() as grader:
        yield from _lines(store, campaign_id, grader if grade else None, pass_truncated)


def _lines(store: Store, campaign_id: int, grader: Any, pass_truncated: bool) -> Iterator[str]:
    last = 0
    while True:
        runs = store.export_runs(campaign_id, last, BATCH)
        if not runs:
            return
        rounds = _rounds(store, [r.run_id for r in runs], pass_truncated)
        done = [r for r in runs if r.status in (RunStatus.DONE, RunStatus.NO_CONCLUSION)]
        verdicts = (
            dict(
                zip(
                    [r.run_id for r in done],
                    grader.grade([(r.final_message, _truth(r.ground_truth)) for r in done]),
                    strict=True,
                )
            )
            if grader
            else {}
        )
        for run in runs:
            yield json.dumps(_record(run, rounds[run.run_id], verdicts.get(run.run_id)), ensure_ascii=False)
        last = runs[-1].run_id


def _truth(ground_truth: Any) -> str | None:
    return (
        str(ground_truth["answer"]) if isinstance(ground_truth, dict) and "answer" in ground_truth else None
    )


def _rounds(store: Store, run_ids: list[int], pass_truncated: bool) -> dict[int, list[dict[str, Any]]]:
    """Per run, its rounds in index order, each with its responses in the official stored order (the
    order the round was advanced with; position order for a round not advanced yet)."""
    out: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for row in store.export_trajectories(run_ids):
        rounds = out[row.run_id]
        if not rounds or rounds[-1]["index"] != row.round_index:
            rounds.append(
                {
                    "index": row.round_index,
                    "is_final": row.is_final,
                    "input": row.input_messages,
                    "order": row.response_order,
                    "finish_order": row.finish_order,
                    "status": row.round_status,
                    "responses": {},
                }
            )
        rounds[-1]["responses"][row.position] = _response(row, pass_truncated)
    for rounds in out.values():
        for rnd in rounds:
            by_position = rnd["responses"]
            rnd["responses"] = [by_position[i] for i in (rnd["order"] or sorted(by_position))]
    return out


def _response(row: ExportTrajectory, pass_truncated: bool) -> dict[str, Any]:
    outcome = Outcome(row.position, row.status, row.content, row.reasoning, row.finish_reason)
    return {
        # the official response: `""` for a failed call or a null content, never null
        "content": outcome.response_content,
        "reasoning_content": outcome.response_reasoning,
        "index": row.position,
        "status": row.status,
        "finish_reason": row.finish_reason,
        "completion_tokens": row.completion_tokens,
        "prompt_tokens": row.prompt_tokens,
        "error": row.error,
        "attempt": row.attempt,
        "attempts_settled": row.attempts_settled,
        "compaction": reference_kind(outcome, pass_truncated),
        "pool_trajectory": row.pool_trajectory,  # with --pool: the pool trajectory this position sampled
    }


_DETAILS = (
    "index",
    "status",
    "finish_reason",
    "completion_tokens",
    "prompt_tokens",
    "error",
    "attempt",
    "attempts_settled",
    "compaction",
    "pool_trajectory",
)


def _record(run: ExportRun, rounds: list[dict[str, Any]], verdict: Any) -> dict[str, Any]:
    """The official result fields (`final_response`, `final_reasoning_content`, `round_responses`) as
    the official pipeline stores them, pacore's own fields beside them."""
    last = rounds[-1] if rounds else None
    advanced = last and last["is_final"] and last["order"] is not None  # the final round has its response
    final = last["responses"][0] if advanced else None
    return {
        "grade": verdict.grade
        if verdict
        else None,  # correct | incorrect | no_answer | timeout; unfinished: null
        "graded_answer": verdict.answer if verdict else None,
        "request_id": f"{run.external_id}#{run.sample}",
        "problem_id": run.external_id,
        "run": run.sample,
        "status": run.status,
        "reason": run.reason,
        "final_response": final["content"] if final else None,
        "final_reasoning_content": final["reasoning_content"] if final else None,
        "final_message": run.final_message,
        "answer": run.answer,
        "ground_truth": run.ground_truth,
        "ttc": run.used,
        "prompt_tokens": run.prompt,
        "round_responses": [
            [{"content": r["content"], "reasoning_content": r["reasoning_content"]} for r in rnd["responses"]]
            for rnd in rounds
        ],
        "round_order": [rnd["order"] for rnd in rounds],
        "round_finish_order": [rnd["finish_order"] for rnd in rounds],
        "round_inputs": [rnd["input"] for rnd in rounds],
        "round_details": [[{k: r[k] for k in _DETAILS} for r in rnd["responses"]] for rnd in rounds],
    }
