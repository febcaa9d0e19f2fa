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
    rows = session.execute(
        text(
            "SELECT r.run_id, r.index, r.k, r.input_messages, r.message_order, r.status, rt.position, t.content, "
            "t.reasoning, t.status, t.finish_reason, t.completion_tokens, t.prompt_tokens, t.error, t.attempt, "
            "t.message, (SELECT count(*) FROM attempt a WHERE a.trajectory_id = t.id), "
            "CASE WHEN t.round_id <> r.id THEN t.id END FROM round r "
            "JOIN round_trajectory rt ON rt.round_id = r.id JOIN trajectory t ON t.id = rt.trajectory_id "
            "WHERE r.run_id = ANY(:ids) ORDER BY r.run_id, r.index, rt.position"
        ),
        {"ids": run_ids},
    ).all()
    out: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for (
        run_id,
        index,
        k,
        inputs,
        order,
        status,
        _pos,
        content,
        reasoning,
        t_status,
        finish,
        comp,
        prompt,
        error,
        attempt,
        message,
        attempts,
        pooled,
    ) in rows:
        rounds = out[run_id]
        if not rounds or rounds[-1]["index"] != index:
            rounds.append(
                {"index": index, "k": k, "input": inputs, "order": order, "status": status, "responses": []}
            )
        rounds[-1]["responses"].append(
            {
                "content": content,
                "reasoning_content": reasoning,
                "status": t_status,
                "finish_reason": finish,
                "completion_tokens": comp,
                "prompt_tokens": prompt,
                "error": error,
                "attempt": attempt,
                "attempts_settled": attempts,
                "compaction": _compaction(message, finish, content, pass_truncated),
                "pool_trajectory": pooled,  # with --pool: the pool trajectory this position sampled
            }
        )
    return out


def _compaction(message: str | None, finish: str | None, content: str | None, pass_truncated: bool) -> str:
    """How the trajectory's message was made: its conclusion, its whole text (a truncated trajectory
    under --pass-truncated), or nothing (no conclusion, failed, or not finished)."""
    if message is None:
        return "none"
    if pass_truncated and finish == "length" and not (content or "").strip():
        return "whole_text"
    return "conclusion"


def _record(run: Any, rounds: list[dict[str, Any]], verdict: Any) -> dict[str, Any]:
    run_id, sample, status, reason, answer, final_message, used, prompt, external_id, ground_truth = run
    final = rounds[-1]["responses"][0] if rounds and status == "done" else None
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
        "final_response": final_message,
        "final_reasoning_content": final["reasoning_content"] if final else None,
        "answer": answer,
        "ground_truth": ground_truth,
        "ttc": used,
        "prompt_tokens": prompt,
        "round_responses": [
            [{"content": r["content"], "reasoning_content": r["reasoning_content"]} for r in rnd["responses"]]
            for rnd in rounds
        ],
        "round_inputs": [rnd["input"] for rnd in rounds],
        "round_order": [rnd["order"] for rnd in rounds],
        "round_details": [
            [
                {
                    k: r[k]
                    for k in (
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
                }
                for r in rnd["responses"]
            ]
            for rnd in rounds
        ],
    }
