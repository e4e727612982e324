"""The pattern API and the greedy worklist driver: fixpoints, non-convergence, debugging."""

from __future__ import annotations

import io

import pytest

from optllm.ir import Operation, parse_module, print_module, verify_module
from optllm.passes import PassContext, PassError, run_pipeline
from optllm.passes.rewrite import (
    Match,
    Pattern,
    RewriteError,
    Rewriter,
    apply_patterns_greedily,
    report_greedy,
)

IR = """module @m {
  func @forward(%x: f32[4], %y: f32[4]) -> (f32[4]) {
    %0 = core.exp %x : f32[4]
    %1 = core.add %0, %y : f32[4]
    %2 = core.neg %1 : f32[4]
    %3 = core.tanh %x : f32[4]
    return %2
  }
}
"""


class RecreateExp(Pattern):
    """Replaces every exp with a fresh identical exp: never converges."""

    name = "recreate-exp"
    root = "core.exp"

    def match(self, op: Operation) -> Match | str:
        return Match(op, x=op.operands[0])

    def rewrite(self, match: Match, rewriter: Rewriter) -> None:
        new = rewriter.create(match.op, "core.exp", [match.x])
        rewriter.replace_op(match.op, new.result)


class SwapAdd(Pattern):
    """Swaps the operands of every add: two applications undo each other."""

    name = "swap-add"
    root = "core.add"

    def match(self, op: Operation) -> Match | str:
        return Match(op)

    def rewrite(self, match: Match, rewriter: Rewriter) -> None:
        x, y = match.op.operands
        rewriter.set_operand(match.op, 0, y)
        rewriter.set_operand(match.op, 1, x)


class NegToExp(Pattern):
    """Rewrites neg(v) -> exp(v) once per neg, and explains other candidates."""

    name = "neg-to-exp"
    root = None  # any op

    def match(self, op: Operation) -> Match | str:
        if op.name != "core.neg":
            return f"{op.name} is not core.neg"
        return Match(op, v=op.operands[0])

    def rewrite(self, match: Match, rewriter: Rewriter) -> None:
        new = rewriter.create(match.op, "core.exp", [match.v])
        rewriter.replace_op(match.op, new.result)


def test_fixpoint_reached_and_dead_ops_erased() -> None:
    m = parse_module(IR)
    result = apply_patterns_greedily(m, [NegToExp()])
    assert result.converged and result.changed
    assert result.counts == {"neg-to-exp": 1} and result.erased == 1  # the unused tanh
    assert result.iterations == 2  # the second sweep confirms nothing is left
    verify_module(m)
    text = print_module(m)
    assert "core.neg" not in text and "core.tanh" not in text


def test_erase_dead_can_be_switched_off() -> None:
    m = parse_module(IR)
    result = apply_patterns_greedily(m, [NegToExp()], erase_dead=False)
    assert result.erased == 0 and "core.tanh" in print_module(m)


def test_a_pattern_that_always_fires_hits_the_rewrite_limit() -> None:
    m = parse_module(IR)
    result = apply_patterns_greedily(m, [RecreateExp()], max_rewrites=50)
    assert not result.converged and result.rewrites == 50 and result.iterations == 1
    verify_module(m)  # stopped cleanly between rewrites


def test_patterns_undoing_each_other_do_not_converge() -> None:
    m = parse_module(IR)
    result = apply_patterns_greedily(m, [SwapAdd()], max_iterations=3, max_rewrites=7)
    assert not result.converged and result.rewrites == 7


def test_non_convergence_is_a_warning_or_an_error() -> None:
    m = parse_module(IR)
    result = apply_patterns_greedily(m, [SwapAdd()], max_rewrites=5)
    ctx = PassContext()
    report_greedy(result, ctx, "my-pass")
    assert ctx.statistics["num-non-converged"] == 1 and ctx.statistics["num-rewrites"] == 5
    assert "my-pass: the greedy rewrite did not converge" in ctx.warnings[0]
    with pytest.raises(RewriteError, match="did not converge"):
        report_greedy(result, PassContext(), "my-pass", fail=True)


def test_canonicalize_option_turns_non_convergence_into_an_error() -> None:
    ir = IR.replace("%2 = core.neg %1", "%2 = core.neg %1 : f32[4]\n    %9 = core.neg %2")
    ir = ir.replace("return %2", "return %9").replace(": f32[4] : f32[4]", ": f32[4]")
    with pytest.raises(PassError, match="did not converge after 1 iteration"):
        run_pipeline(parse_module(ir), "canonicalize{max-iterations=1,fail-on-non-convergence=true}")
    run_pipeline(parse_module(ir), "canonicalize{max-iterations=2,fail-on-non-convergence=true}")


def test_debug_patterns_explain_failed_candidates() -> None:
    m = parse_module(IR)
    out = io.StringIO()
    ctx = PassContext(debug_patterns=frozenset({"neg-to-exp"}), debug_stream=out)
    apply_patterns_greedily(m, [NegToExp(), RecreateExp()], max_iterations=1, max_rewrites=3, ctx=ctx)
    text = out.getvalue()
    assert "[neg-to-exp] no match: core.add is not core.neg" in text
    assert "[neg-to-exp] rewriting" in text
    assert "recreate-exp" not in text  # only the pattern asked for


def test_rewriter_refuses_type_changing_replacements() -> None:
    m = parse_module(IR.replace("%3 = core.tanh %x : f32[4]", "%3 = core.reshape %x {shape = [2,2]} : f32[2,2]"))
    ops = {op.name: op for op in m.main}
    rewriter = Rewriter()
    with pytest.raises(RewriteError, match="cannot replace a f32\\[4\\] value with a f32\\[2,2\\] value"):
        rewriter.replace_all_uses(ops["core.neg"].result, ops["core.reshape"].result)
    with pytest.raises(RewriteError, match="has 1 results, replaced with 2 values"):
        rewriter.replace_op(ops["core.neg"], [m.main.inputs[0], m.main.inputs[1]])


def test_patterns_apply_inside_regions() -> None:
    m = parse_module("""module @m {
  func @forward(%x: f32[4]) -> (f32[4]) {
    %0 = fused.region %x : f32[4] {
      ^(%a: f32[4]):
      %0 = core.neg %a : f32[4]
      return %0
    }
    return %0
  }
}
""")
    result = apply_patterns_greedily(m, [NegToExp()])
    assert result.counts == {"neg-to-exp": 1}
    verify_module(m)
    assert "core.exp %a" in print_module(m)


def test_match_captures_are_attributes() -> None:
    m = parse_module(IR)
    op = next(iter(m.main))
    match = Match(op, x=1)
    assert match.x == 1 and match.op is op
    with pytest.raises(AttributeError, match="no capture 'y'"):
        _ = match.y
