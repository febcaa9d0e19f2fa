"""`pacore export`: one JSONL line per run, a superset of the official PaCoRe results format.

Streams: runs are read in batches, never the whole campaign at once; each batch's final answers are
graded (math-verify, in a pool of subprocesses kept for the whole export) as it goes.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from pacore.core.compaction import Outcome, reference_kind

BATCH = 200


def export_lines(session: Session, campaign_id: int, grade: bool = True) -> Iterator[str]:
    from pacore.grading import Grader

    pass_truncated = bool(
        session.execute(
            text(
                "SELECT coalesce((config ->> 'pass_truncated')::boolean, false) FROM campaign WHERE id = :id"
            ),
            {"id": campaign_id},
        ).scalar()
    )
    with Grader() as grader:
        yield from _lines(session, campaign_id, grader if grade else None, pass_truncated)


def _lines(session: Session, campaign_id: int, grader: Any, pass_truncated: bool) -> Iterator[str]:
    last = 0
    while True:
        runs = session.execute(
            text(
                "SELECT run.id, run.sample, run.status, run.reason, run.answer, run.final_message, run.tokens_used, "
                "run.prompt_tokens, p.external_id, p.ground_truth FROM run JOIN problem p ON p.id = run.problem_id "
                "WHERE run.campaign_id = :cid AND run.sample >= 0 AND run.id > :last ORDER BY run.id LIMIT :n"
            ),
            {"cid": campaign_id, "last": last, "n": BATCH},
        ).all()
        if not runs:
            return
        rounds = _rounds(session, [r[0] for r in runs], pass_truncated)
        done = [r for r in runs if r[2] == "done"]
        verdicts = (
            dict(zip([r[0] for r in done], grader.grade([(r[5], _truth(r[9])) for r in done]), strict=True))
            if grader
            else {}
        )
        for run in runs:
            yield json.dumps(_record(run, rounds[run[0]], verdicts.get(run[0])), ensure_ascii=False)
        last = runs[-1][0]


def _truth(ground_truth: Any) -> str | None:
    return (
        str(ground_truth["answer"]) if isinstance(ground_truth, dict) and "answer" in ground_truth else None
    )


def _rounds(session: Session, run_ids: list[int], pass_truncated: bool) -> dict[int, list[dict[str, Any]]]:
    """Per run, its rounds in index order, each with its responses in the official stored order (the
    order the round was advanced with; position order for a round not advanced yet)."""
    rows = session.execute(
        text(
            "SELECT r.run_id, r.index, r.is_final, r.input_messages, r.response_order, r.finish_order, r.status, "
            "rt.position, t.content, t.reasoning, t.status, t.finish_reason, t.completion_tokens, t.prompt_tokens, "
            "t.error, t.attempt, (SELECT count(*) FROM attempt a WHERE a.trajectory_id = t.id), "
            "CASE WHEN t.round_id <> r.id THEN t.id END FROM round r "
            "JOIN round_trajectory rt ON rt.round_id = r.id JOIN trajectory t ON t.id = rt.trajectory_id "
            "WHERE r.run_id = ANY(:ids) ORDER BY r.run_id, r.index, rt.position"
        ),
        {"ids": run_ids},
    ).all()
    out: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for run_id, index, is_final, inputs, order, finished, status, position, *trajectory in rows:
        rounds = out[run_id]
        if not rounds or rounds[-1]["index"] != index:
            rounds.append(
                {
                    "index": index,
                    "is_final": is_final,
                    "input": inputs,
                    "order": order,
                    "finish_order": finished,
                    "status": status,
                    "responses": {},
                }
            )
        rounds[-1]["responses"][position] = _response(position, trajectory, pass_truncated)
    for rounds in out.values():
        for rnd in rounds:
            by_position = rnd["responses"]
            rnd["responses"] = [by_position[i] for i in (rnd["order"] or sorted(by_position))]
    return out


def _response(position: int, row: list[Any], pass_truncated: bool) -> dict[str, Any]:
    content, reasoning, status, finish, comp, prompt, error, attempt, attempts, pooled = row
    outcome = Outcome(position, status, content, reasoning, finish)
    return {
        # the official response: `""` for a failed call or a null content, never null
        "content": outcome.response_content,
        "reasoning_content": outcome.response_reasoning,
        "index": position,
        "status": status,
        "finish_reason": finish,
        "completion_tokens": comp,
        "prompt_tokens": prompt,
        "error": error,
        "attempt": attempt,
        "attempts_settled": attempts,
        "compaction": reference_kind(outcome, pass_truncated),
        "pool_trajectory": pooled,  # with --pool: the pool trajectory this position sampled
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


def _record(run: Any, rounds: list[dict[str, Any]], verdict: Any) -> dict[str, Any]:
    """The official result fields (`final_response`, `final_reasoning_content`, `round_responses`) as
    the official pipeline stores them, pacore's own fields beside them."""
    run_id, sample, status, reason, answer, final_message, used, prompt, external_id, ground_truth = run
    last = rounds[-1] if rounds else None
    advanced = last and last["is_final"] and last["order"] is not None  # the final round has its response
    final = last["responses"][0] if advanced else None
    return {
        "grade": verdict.grade
        if verdict
        else None,  # correct | incorrect | no_answer | timeout; unfinished: null
        "graded_answer": verdict.answer if verdict else None,
        "request_id": f"{external_id}#{sample}",
        "problem_id": external_id,
        "run": sample,
        "status": status,
        "reason": reason,
        "final_response": final["content"] if final else None,
        "final_reasoning_content": final["reasoning_content"] if final else None,
        "final_message": final_message,
        "answer": answer,
        "ground_truth": ground_truth,
        "ttc": used,
        "prompt_tokens": prompt,
        "round_responses": [
            [{"content": r["content"], "reasoning_content": r["reasoning_content"]} for r in rnd["responses"]]
            for rnd in rounds
        ],
        "round_order": [rnd["order"] for rnd in rounds],
        "round_finish_order": [rnd["finish_order"] for rnd in rounds],
        "round_inputs": [rnd["input"] for rnd in rounds],
        "round_details": [[{k: r[k] for k in _DETAILS} for r in rnd["responses"]] for rnd in rounds],
    }
