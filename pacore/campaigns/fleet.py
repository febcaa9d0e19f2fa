"""What the live fleet serves, as campaigns need to know it: the model a campaign submitted without
`--model` gets, and the warning when no live worker serves a campaign's model (its work would wait in
the broker, silently, for a worker that never comes)."""

from __future__ import annotations

from pacore.store.fleet import ModelFleet


class ModelChoiceError(ValueError):
    """The live fleet serves several models: the campaign must name one."""


def choose_model(given: str | None, fleet: list[ModelFleet], default: str) -> tuple[str, str | None]:
    """The campaign's model, and what to tell the person who submits it (None: nothing)."""
    if given:
        return given, waiting_note(given, fleet)
    live = [f for f in fleet if f.workers]
    if len(live) == 1:
        only = live[0]
        return (
            only.model,
            f"model {only.model!r}: the only model the live fleet serves ({only.workers} workers)",
        )
    if live:
        served = ", ".join(f"{f.model!r} ({f.workers} workers)" for f in live)
        raise ModelChoiceError(f"the live fleet serves several models ({served}): choose one with --model")
    return default, (
        f"no live worker serves any model: the campaign takes PACORE_MODEL ({default!r}) and waits for a "
        f"worker that serves it (`pacore worker --model {default}`)"
    )


def waiting_note(model: str, fleet: list[ModelFleet]) -> str | None:
    """Why a campaign of `model` would wait for the fleet (None: live workers serve it)."""
    entry = next((f for f in fleet if f.model == model), None)
    if entry is not None and entry.workers:
        return None
    down = ""
    if entry is not None and entry.engines_down:
        down = f" ({entry.engines_down} worker(s) serve it, their engine down)"
    served = ", ".join(f"{f.model!r} ({f.workers} workers)" for f in fleet if f.workers)
    return (
        f"no live worker serves model {model!r}{down}: its work waits until one does "
        f"(`pacore worker --model {model}`)" + (f"; the live fleet serves {served}" if served else "")
    )
