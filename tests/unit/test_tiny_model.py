"""The tiny scripted model's chain (ops/engine/tiny_model.py, test and benchmark tooling): the default
chain is the script the README shows, and `--conclusion-repeat-p` makes long conclusions whose filler
words differ from the first one on. Expected tables are written out here, not derived from the code."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path
from types import ModuleType

import pytest

PATH = Path(__file__).resolve().parents[2] / "ops" / "engine" / "tiny_model.py"
FILLERS = [" so", " then", " thus", " hence", " now", " well", " yes", " right"]


def tiny_model() -> ModuleType:
    spec = importlib.util.spec_from_file_location("tiny_model", PATH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_default_chain_goes_from_think_straight_to_the_answer() -> None:
    table = tiny_model().transitions(0.9, {"7": 1.0})
    assert table["</think>"] == {" The": 1.0}
    assert table[" hmm"] == {" hmm": 0.9, "</think>": pytest.approx(0.1)}
    assert not set(FILLERS) & set(table), "no filler word in the default model"


def test_long_conclusions_draw_each_filler_word_from_eight_and_end_in_the_answer() -> None:
    table = tiny_model().transitions(0.9, {"7": 1.0}, conclusion_p=0.99)
    assert table["</think>"] == dict.fromkeys(FILLERS, 0.125)
    for filler in FILLERS:
        assert table[filler] == {**dict.fromkeys(FILLERS, 0.99 / 8), " The": pytest.approx(0.01)}
    assert table[" The"] == {" answer": 1.0}
    for state, successors in table.items():
        assert math.isclose(sum(successors.values()), 1.0), state
    assert len(table) <= 64, "each state needs its own orthonormal embedding in a hidden size of 64"
