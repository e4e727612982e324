"""Every graph the ONNX fuzzer found failing, shrunk and saved under ``tests/data/onnx_fuzz``,
runs on both targets and matches onnxruntime. A case whose metadata names a known open bug
(``known``) on its target is a strict xfail there: it turns into a failure once fixed, so the
mark is removed with the fix."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from optllm.testing.onnx_fuzz import compare, load_saved, run_onnxruntime, run_optllm  # noqa: E402

CASES = sorted((Path(__file__).parents[2] / "data" / "onnx_fuzz").glob("*.onnxtxt"))


def test_saved_cases_exist() -> None:
    assert CASES, "tests/data/onnx_fuzz holds no saved case (is the .gitignore negation there?)"


@pytest.mark.parametrize("target", ["reference", "cpu"])
@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_saved_case_matches_onnxruntime(path: Path, target: str, request: pytest.FixtureRequest) -> None:
    model, feeds, meta = load_saved(path)
    if meta.get("known") and meta.get("target") == target:
        request.applymarker(pytest.mark.xfail(reason=meta["known"], strict=True))
    want = run_onnxruntime(model, feeds)
    got = run_optllm(model, feeds, target)
    why = compare(want, got)
    assert why is None, f"{path.name} on {target}: {why}"
