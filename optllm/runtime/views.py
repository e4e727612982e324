"""Strided views over storages: how the runtime turns the IR's view ops into index arithmetic.

A ``View`` is numpy's model of an array — a storage, an element offset, a shape and element
strides — so ``core.reshape``, ``core.permute``, ``core.expand``, ``core.slice`` and
``core.split`` cost no kernel and no copy: they produce a new ``View`` of the same storage::

    %23 = core.reshape %16 {shape = [B, S, 12, 64]}     View(s7, off 0,    [1,128,12,64], [294912,2304,64,1])
    %24 = core.permute %23 {perm = [0, 2, 1, 3]}        View(s7, off 0,    [1,12,128,64], [294912,64,2304,1])
    (%16 is the first third of a QKV GEMM output:        View(s7, off 0,    [1,128,768],   [294912,2304,1]))

A reshape that no strides can express (numpy would copy) returns ``None``; the lowering then
inserts an explicit copy kernel.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class View:
    storage: int
    offset: int  # elements
    shape: tuple[int, ...]
    strides: tuple[int, ...]  # elements; 0 on broadcast dims
    dtype: np.dtype

    @property
    def rank(self) -> int:
        return len(self.shape)

    @property
    def numel(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    @property
    def itemsize(self) -> int:
        return int(self.dtype.itemsize)

    def is_contiguous(self) -> bool:
        return self.strides == contiguous_strides(self.shape) or self.numel <= 1

    def permute(self, perm: Sequence[int]) -> View:
        return View(self.storage, self.offset, tuple(self.shape[p] for p in perm),
                    tuple(self.strides[p] for p in perm), self.dtype)

    def expand(self, shape: Sequence[int]) -> View:
        """numpy ``broadcast_to``: new leading dims and size-1 dims get stride 0."""
        lead = len(shape) - self.rank
        strides = [0] * lead
        for i, (d, s) in enumerate(zip(self.shape, self.strides)):
            strides.append(s if d == shape[lead + i] else 0)
        return View(self.storage, self.offset, tuple(shape), tuple(strides), self.dtype)

    def slice(self, axis: int, start: int, stop: int, step: int = 1) -> View:
        n = max(0, -(-(stop - start) // step))
        shape = list(self.shape)
        strides = list(self.strides)
        shape[axis] = n
        strides[axis] = self.strides[axis] * step
        return View(self.storage, self.offset + start * self.strides[axis], tuple(shape), tuple(strides), self.dtype)

    def reshape(self, shape: Sequence[int]) -> View | None:
        """The same elements in row-major order with ``shape``, if strides can express it."""
        shape = tuple(int(d) for d in shape)
        if self.is_contiguous():
            return View(self.storage, self.offset, shape, contiguous_strides(shape), self.dtype)
        strides = _nocopy_reshape(self.shape, self.strides, shape)
        return None if strides is None else View(self.storage, self.offset, shape, strides, self.dtype)

    def rows(self) -> tuple[int, int, int] | None:
        """``(rows, row_stride, n)`` when the view is a matrix of rows over its last dim with a
        unit inner stride and the leading dims collapse to one strided dim; else ``None``."""
        if self.rank == 0:
            return (1, 1, 1)
        n = self.shape[-1]
        if self.strides[-1] != 1 and n > 1:
            return None
        lead = [(d, s) for d, s in zip(self.shape[:-1], self.strides[:-1]) if d != 1]
        rows = int(np.prod([d for d, _ in lead], dtype=np.int64)) if lead else 1
        if not lead:
            return (rows, n, n)
        for (_d0, s0), (d1, s1) in zip(lead, lead[1:]):
            if s0 != s1 * d1:
                return None
        return (rows, lead[-1][1], n)


def contiguous_strides(shape: Sequence[int]) -> tuple[int, ...]:
    out = []
    acc = 1
    for d in reversed(shape):
        out.append(acc)
        acc *= max(int(d), 1)
    return tuple(reversed(out))


def _nocopy_reshape(old: Sequence[int], old_strides: Sequence[int], new: Sequence[int]) -> tuple[int, ...] | None:
    """numpy's ``_attempt_nocopy_reshape``: match groups of old and new dims with equal products;
    each old group must be contiguous within itself."""
    od = [(d, s) for d, s in zip(old, old_strides) if d != 1]
    nd = list(new)
    if int(np.prod([d for d, _ in od], dtype=np.int64)) != int(np.prod(nd, dtype=np.int64)):
        return None
    out = [0] * len(nd)
    oi = ni = 0
    while oi < len(od) and ni < len(nd):
        if nd[ni] == 1:
            out[ni] = 1
            ni += 1
            continue
        op, np_ = od[oi][0], nd[ni]
        oj, nj = oi + 1, ni + 1
        while op != np_:
            if np_ < op:
                np_ *= nd[nj]
                nj += 1
            else:
                op *= od[oj][0]
                oj += 1
        for k in range(oi, oj - 1):  # the old group must be contiguous
            if od[k][1] != od[k + 1][1] * od[k + 1][0]:
                return None
        out[nj - 1] = od[oj - 1][1]
        for k in range(nj - 1, ni, -1):
            out[k - 1] = out[k] * nd[k]
        oi, ni = oj, nj
    for k in range(ni, len(nd)):
        out[k] = 1
    return tuple(out)


def broadcast_strides(view: View, shape: Sequence[int]) -> tuple[int, ...]:
    """The view's strides over an output of ``shape`` (numpy broadcasting: trailing alignment,
    0 on new or size-1 dims)."""
    return view.expand(shape).strides


def collapse(shape: Sequence[int], strides: Sequence[Sequence[int]]) -> tuple[list[int], list[list[int]]]:
    """Drop size-1 dims and merge adjacent dims that every operand walks contiguously. The last
    dim stays separate unless it is tiny (< 16), so the inner loop is the long unit-stride one
    and the outer loop has rows to split across workers."""
    dims = [i for i, d in enumerate(shape) if d != 1]
    if not dims:
        return [1], [[0] for _ in strides]
    out_shape = [int(shape[dims[0]])]
    out_strides = [[int(st[dims[0]])] for st in strides]
    for i in dims[1:]:
        mergeable = all(s[-1] == st[i] * shape[i] for s, st in zip(out_strides, strides))
        if mergeable and (i != dims[-1] or shape[i] < 16):
            out_shape[-1] *= int(shape[i])
            for s, st in zip(out_strides, strides):
                s[-1] = int(st[i])
        else:
            out_shape.append(int(shape[i]))
            for s, st in zip(out_strides, strides):
                s.append(int(st[i]))
    return out_shape, out_strides
