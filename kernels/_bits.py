"""Bit casts between float64 and int64 scalars, as LLVM ``bitcast`` instructions.

``array.view(np.int64)`` does the same on whole arrays, but Numba compiles a view through
its dtype-change machinery, about 0.15 s of a first run per view; an intrinsic costs
nothing to compile and LLVM vectorises loops of bit casts as it does loads.
"""

from __future__ import annotations

import numba
import numpy as np
from llvmlite import ir
from numba.core import types
from numba.extending import intrinsic


@intrinsic
def _f64_bits(typingctx, x):
    if x != types.float64:
        return None

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.IntType(64))

    return types.int64(types.float64), codegen


@intrinsic
def _bits_f64(typingctx, x):
    if x != types.int64:
        return None

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.DoubleType())

    return types.float64(types.int64), codegen


def _f64_bits_py(x):
    return int(np.float64(x).view(np.int64))


def _bits_f64_py(b):
    return float(np.int64(b).view(np.float64))


#: ``f64_bits(x)``: the IEEE 754 bits of float64 ``x`` as an int64.
f64_bits = _f64_bits_py if numba.config.DISABLE_JIT else _f64_bits
#: ``bits_f64(b)``: the float64 whose IEEE 754 bits are int64 ``b``.
bits_f64 = _bits_f64_py if numba.config.DISABLE_JIT else _bits_f64
