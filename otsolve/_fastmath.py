"""Vectorisable exp and log for the Numba kernels.

libm's ``exp`` and ``log`` are scalar calls (Numba has no vector math library here) that stop
LLVM from vectorising a loop; in the soft-min passes they cost 2-3x the rest of the work. These
are polynomials with the exponent handled by bit casts, so a loop over them vectorises. They
are safe under the ``FAST`` flags (no trick that reassociation would undo) and keep inf and NaN.

Numba's disk cache does not see a change here: the kernels that inline these functions keep
their cached machine code until their own file changes (clear ``__pycache__`` after an edit).
"""
import math

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic

# Loops may reorder sums and fuse multiply-adds (so that they vectorise), but keep inf and NaN:
# log b_j = -inf marks a zero-weight target and a NaN must reach the finiteness checks.
FAST = {"reassoc", "contract", "nsz", "arcp"}
LN2_HI, LN2_LO = 6.93147180369123816490e-01, 1.90821492927058770002e-10  # ln 2 in two parts
SMALLEST_NORMAL = 2.2250738585072014e-308


@intrinsic
def bits_as_float(typingctx, bits):
    """Reinterpret the bits of an int64 as a float64."""
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.DoubleType())
    return types.float64(types.int64), codegen


@intrinsic
def float_bits(typingctx, x):
    """The bits of a float64 as an int64."""
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.IntType(64))
    return types.int64(types.float64), codegen


@njit(cache=True, inline="always", fastmath=FAST, error_model="numpy")
def fast_exp(x):
    """exp(x), relative error 2e-15 for |x| < 50 and 3e-14 near 700: 2**k exp(r) with
    |r| <= log(2) / 2 (Cody-Waite) and exp(r) by its Taylor series to degree 12 in Estrin's
    form (short dependency chains). 0 below -708 (subnormals flushed), inf above 709, NaN for NaN."""
    y = -708.0 if x < -708.0 else (709.0 if x > 709.0 else x)  # NaN stays NaN
    k = math.floor(y * 1.4426950408889634 + 0.5)  # round(y / log 2), safe under FAST
    r = (y - k * LN2_HI) - k * LN2_LO
    r2 = r * r
    r4 = r2 * r2
    q0 = (1.0 + r) + (0.5 + r * (1.0 / 6.0)) * r2
    q1 = (1.0 / 24.0 + r * (1.0 / 120.0)) + (1.0 / 720.0 + r * (1.0 / 5040.0)) * r2
    q2 = (1.0 / 40320.0 + r * (1.0 / 362880.0)) + (1.0 / 3628800.0 + r * (1.0 / 39916800.0)) * r2
    p = (q0 + q1 * r4) + (q2 + r4 * (1.0 / 479001600.0)) * (r4 * r4)
    e = p * bits_as_float((np.int64(k) + 1023) << 52)  # 2**k from its exponent bits
    if x < -708.0:
        return 0.0
    return np.inf if x > 709.0 else e


@njit(cache=True, inline="always", fastmath=FAST, error_model="numpy")
def fast_log(x):
    """log(x), relative error ~1e-16, for x > 0: x = 2**e u with u in [sqrt(1/2), sqrt(2)),
    log u = 2 atanh(z), z = (u - 1) / (u + 1), |z| < 0.172, by its series to z**21. Values
    below the smallest normal float count as it (the log is then above the truth)."""
    bits = float_bits(max(x, SMALLEST_NORMAL))
    e = (bits >> 52) - 1023
    u = bits_as_float((bits & 0xFFFFFFFFFFFFF) | 0x3FF0000000000000)  # mantissa, in [1, 2)
    big = u > 1.4142135623730951
    u = 0.5 * u if big else u
    e = e + 1 if big else e
    z = (u - 1.0) / (u + 1.0)
    z2 = z * z
    s = 1.0 / 21.0
    for d in (19.0, 17.0, 15.0, 13.0, 11.0, 9.0, 7.0, 5.0, 3.0, 1.0):
        s = s * z2 + 1.0 / d
    return e * 0.6931471805599453 + 2.0 * z * s
