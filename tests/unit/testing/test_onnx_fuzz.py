"""The ONNX differential fuzzer: a short seeded campaign runs clean on both targets, planted
bugs are caught and shrunk to the op that carries them, and shrunk cases save and load."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from optllm.testing.onnx_fuzz import (  # noqa: E402
    campaign,
    check,
    dim_value,
    generate,
    inject_bug,
    load_saved,
    run_onnxruntime,
    save_case,
    shrink,
)

SEEDS = range(40)


def test_generated_graphs_are_valid_onnx() -> None:
    import onnx

    for seed in range(10):
        case = generate(seed)
        onnx.checker.check_model(case.model(), full_check=True)
        outs = run_onnxruntime(case.model(), case.feeds)
        assert [list(o.shape) for o in outs] == [
            [dim_value(d, case.env) for d in case.types[n].shape] for n in case.outputs]


def test_short_campaign_is_clean() -> None:
    """40 seeded graphs: no mismatch, no crash, no invalid graph; an unsupported outcome names its op."""
    report = campaign(SEEDS, ("reference", "cpu"))
    assert report.graphs == len(SEEDS)
    bad = [(seed, target, o.kind, o.detail) for seed, target, o in report.failures]
    assert bad == []
    for target, ops in report.unsupported.items():
        assert "?" not in ops, f"an unsupported outcome on {target} that names no op"


@pytest.mark.parametrize("bug,op,target", [("sub-swapped", "Sub", "reference"), ("gather-shifted", "Gather", "cpu"),
                                           ("tanh-reference", "Tanh", "reference")])
def test_planted_bug_is_caught_and_shrunk(bug: str, op: str, target: str) -> None:
    with inject_bug(bug):
        for seed in range(60):
            case = generate(seed)
            if op not in case.ops():
                continue
            outcome = check(case, target)
            if outcome.kind == "mismatch":
                small = shrink(case, target, outcome)
                assert op in small.ops() and len(small.nodes) <= 3, small.ops()
                assert check(small, target).kind == "mismatch"
                break
        else:
            pytest.fail(f"no graph of 60 caught the planted bug {bug}")
    assert check(small, target).kind == "ok"  # the bug is gone with the hook


def test_saved_case_round_trips(tmp_path: Path) -> None:
    case = generate(3)
    path = save_case(case, tmp_path, "c3", "reference", check(case, "reference"))
    model, feeds, meta = load_saved(path)
    assert meta["target"] == "reference" and meta["outcome"] == "ok"
    assert sorted(feeds) == sorted(case.feeds)
    for a, b in zip(run_onnxruntime(model, feeds), run_onnxruntime(case.model(), case.feeds)):
        np.testing.assert_array_equal(a, b)
