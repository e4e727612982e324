"""verify_kernel: accepts well-formed kernels, rejects each kind of malformed one with a message
naming the kernel and the statement."""

from __future__ import annotations

import pytest

from optllm.backends.kernels.kir import (
    BOOL,
    F32,
    F64,
    I32,
    I64,
    Addr,
    Assign,
    Binary,
    Cast,
    Declare,
    For,
    If,
    Kernel,
    KIRError,
    Let,
    Param,
    Stmt,
    Store,
    Unary,
    c,
    call,
    load,
    v,
)
from optllm.backends.kernels.verify import verify_kernel

PARAMS = (Param("out", "buffer", F32), Param("x", "buffer", F32), Param("idx", "buffer", I64),
          Param("n", "scalar", I64), Param("eps", "scalar", F32))


def k(*body: Stmt) -> Kernel:
    return Kernel("probe", PARAMS, tuple(body))


def loop(*body: Stmt) -> For:
    return For("i", c(0), v("n"), tuple(body))


def sgemm(**override) -> Stmt:
    args = {"trans_a": c(0), "trans_b": c(0), "m": v("n"), "n": v("n"), "k": v("n"), "alpha": c(1.0, F32),
            "a": Addr("x", c(0)), "lda": v("n"), "b": Addr("x", c(0)), "ldb": v("n"), "beta": c(0.0, F32),
            "c": Addr("out", c(0)), "ldc": v("n")}
    args.update(override)
    return call("sgemm", *args.values())


GOOD = [
    k(loop(Store("out", v("i"), load("x", v("i"), F32) * v("eps", F32)))),
    k(Declare("acc", c(0.0, F32)), loop(Assign("acc", v("acc", F32) + load("x", v("i"), F32))),
      Store("out", c(0), v("acc", F32))),
    k(loop(Let("j", load("idx", v("i"), I64)), If(Binary("lt", v("j"), v("n")),
                                                  (Store("out", v("j"), c(1.0, F32)),)))),
    k(loop(Store("out", v("i"), Cast(Unary("isnan", load("x", v("i"), F32)), F32)))),
    k(sgemm()),
]


@pytest.mark.parametrize("kernel", GOOD, ids=range(len(GOOD)))
def test_accepts(kernel: Kernel):
    verify_kernel(kernel)


BAD = [
    (k(loop(Store("out", v("j"), c(0.0, F32)))), r"probe in `out\[j\] = 0.0:f32`: j is not a loop variable"),
    (k(Store("out", c(0), v("x", F32))), "x is not a loop variable"),
    (k(loop(Let("a", c(1.0, F32))), Store("out", c(0), v("a", F32))), "a is not a loop variable"),
    (k(Store("out", c(0), v("n", F32))), "n is i64 but used as f32"),
    (k(Store("n", c(0), c(0))), "n is not a buffer parameter"),
    (k(Store("nope", c(0), c(0.0, F32))), "nope is not a buffer parameter"),
    (k(Store("out", c(0), load("x", c(0), F64))), "loads f64 from x, a f32 buffer"),
    (k(Store("out", c(0), c(1.0, F64))), "stores a f64 value into out, a f32 buffer"),
    (k(Store("out", c(0, I32), c(1.0, F32))), "index 0:i32 is i32, not i64"),
    (k(Assign("n", c(1))), "assigns n, which is a param"),
    (k(Assign("zz", c(1))), "assigns zz, which is undeclared"),
    (k(loop(Let("t", c(1))), Assign("t", c(2))), "assigns t, which is undeclared"),
    (k(Let("t", c(1)), Assign("t", c(2))), "assigns t, which is a let"),
    (k(Declare("acc", c(0.0, F32)), Assign("acc", c(0.0, F64))), "assigns a f64 value to acc, declared f32"),
    (k(For("i", c(0, I32), c(4, I32), ())), "loop bound 0:i32 is i32, not i64"),
    (k(If(c(1), ())), "condition is i64, not bool"),
    (k(Store("out", c(0), Unary("exp", Cast(c(1), F32)) + Cast(Unary("exp", c(1)), F32))), "exp needs a floating"),
    (k(Store("out", c(0), Binary("and", c(1.0, F32), c(1.0, F32)))), "and is not defined on f32"),
    (k(sgemm(alpha=c(1.0, F64))), "sgemm argument alpha must be f32, got f64"),
    (k(sgemm(m=c(3, I32))), "sgemm argument m must be i64"),
    (k(sgemm(a=c(0))), "sgemm argument a must be an Addr"),
    (k(sgemm(c=Addr("idx", c(0)))), "argument c must address an f32 buffer"),
    (Kernel("dup", (Param("a", "scalar", I64), Param("a", "buffer", F32)), ()), "parameter a declared twice"),
    (k(loop(If(Binary("lt", v("i"), c(1)), (), (Store("out", v("q"), c(0.0, F32)),)))), "q is not a loop"),
    (k(Store("out", c(0), Cast(load("idx", c(0), BOOL), F32))), "loads bool from idx"),
]


@pytest.mark.parametrize("kernel,message", BAD, ids=[m for _, m in BAD])
def test_rejects(kernel: Kernel, message: str):
    with pytest.raises(KIRError, match=message) as err:
        verify_kernel(kernel)
    assert str(err.value).startswith(f"kernel {kernel.name}")


def test_message_quotes_loop_header():
    bad = k(For("i", c(0), c(1.0, F32), ()))
    with pytest.raises(KIRError, match=r"in `for i in \[0:i64, 1.0:f32\) work=1`"):
        verify_kernel(bad)
