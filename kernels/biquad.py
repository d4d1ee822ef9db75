"""A stateful second-order-section cascade (the designs are in ``auralis_batch.filters``).

Coefficients use SciPy's ``sos`` layout: each row is ``[b0, b1, b2, a0, a1, a2]`` with
``a0 == 1``. The cascade runs in transposed direct form II, like ``scipy.signal.sosfilt``,
and its state has SciPy's shape per channel, ``(channels, sections, 2)``, so a file
processed in blocks gives exactly the samples of one piece.

The cascade loop is generated as LLVM IR (:func:`_cascade_pair_into`): two channels
ride in the two lanes of a ``<2 x double>`` vector and the sections run as a wavefront
(step ``t`` runs section ``s`` on sample ``t - s``), so the state stays in registers and
the sections of one step are independent. Written as Numba loops, LLVM neither packed the
channels (SLP) nor kept the state out of memory; a sample-major cascade is bound by the
latency of the whole chain of sections per sample, as ``scipy.signal.sosfilt`` is.
"""

from __future__ import annotations

import numba
import numpy as np
from llvmlite import ir
from numba.core import cgutils, types
from numba.extending import intrinsic

from ._jit import jit

#: Sections per generated cascade loop; longer cascades run in groups of this many.
MAX_SECTIONS = 8
_F64 = ir.DoubleType()
_V2 = ir.VectorType(_F64, 2)
_I64 = ir.IntType(64)
_I32 = ir.IntType(32)


def _c64(v):
    return ir.Constant(_I64, v)


class _CascadeEmitter:
    """Emits the IR of a cascade of ``n_sec`` sections over two channels as vector lanes.

    Each section is one TDF-II step in SciPy's order of operations (``sosfilt``):
    ``y = b0 x + z0; z0 = b1 x - a1 y + z1; z1 = b2 x - a2 y``, with no FMA contraction,
    so the output equals ``sosfilt``'s bit for bit, and every sample gets the same
    arithmetic whatever the block boundaries.
    """

    def __init__(self, builder, x0, x1, y0, y1, coefs, z):
        self.b = builder
        self.x0, self.x1, self.y0, self.y1, self.coefs, self.z = x0, x1, y0, y1, coefs, z

    def pair(self, lo, hi):
        b = self.b
        v = b.insert_element(ir.Constant(_V2, ir.Undefined), lo, ir.Constant(_I32, 0))
        return b.insert_element(v, hi, ir.Constant(_I32, 1))

    def load_x(self, i):
        b = self.b
        return self.pair(b.load(b.gep(self.x0, [i])), b.load(b.gep(self.x1, [i])))

    def store_y(self, i, v):
        b = self.b
        b.store(b.extract_element(v, ir.Constant(_I32, 0)), b.gep(self.y0, [i]))
        b.store(b.extract_element(v, ir.Constant(_I32, 1)), b.gep(self.y1, [i]))

    def load_coefs(self, n_sec):
        b = self.b
        rows = []
        for s in range(n_sec):
            row = []
            for j in range(5):
                c = b.load(b.gep(self.coefs, [_c64(5 * s + j)]))
                row.append(self.pair(c, c))
            rows.append(row)
        return rows

    def load_state(self, n_sec):
        b = self.b
        flat = []
        for s in range(n_sec):
            for k in range(2):
                lo = b.load(b.gep(self.z, [_c64(4 * s + 2 * k)]))
                hi = b.load(b.gep(self.z, [_c64(4 * s + 2 * k + 1)]))
                flat.append(self.pair(lo, hi))
        return flat

    def store_state(self, flat):
        b = self.b
        for j, v in enumerate(flat):
            for lane in range(2):
                lane_v = b.extract_element(v, ir.Constant(_I32, lane))
                b.store(lane_v, b.gep(self.z, [_c64(2 * j + lane)]))

    def section(self, co, z, s, v):
        """Section ``s`` on input ``v``: updates ``z[2s], z[2s + 1]``, returns its output."""
        b = self.b
        b0, b1, b2, a1, a2 = co[s]
        r = b.fadd(b.fmul(b0, v), z[2 * s])
        z[2 * s] = b.fadd(b.fsub(b.fmul(b1, v), b.fmul(a1, r)), z[2 * s + 1])
        z[2 * s + 1] = b.fsub(b.fmul(b2, v), b.fmul(a2, r))
        return r

    def loop(self, start, stop, carried, body):
        """``for i in range(start, stop): carried = body(i, carried)``; the final values."""
        b = self.b
        pre = b.block
        head = b.append_basic_block("sos_loop")
        done = b.append_basic_block("sos_done")
        b.cbranch(b.icmp_signed("<", start, stop), head, done)
        b.position_at_end(head)
        i = b.phi(_I64)
        phis = [b.phi(v.type) for v in carried]
        new = body(i, list(phis))
        i_next = b.add(i, _c64(1))
        end = b.block
        i.add_incoming(start, pre)
        i.add_incoming(i_next, end)
        for p, v0, v1 in zip(phis, carried, new, strict=True):
            p.add_incoming(v0, pre)
            p.add_incoming(v1, end)
        b.cbranch(b.icmp_signed("<", i_next, stop), head, done)
        b.position_at_end(done)
        finals = [b.phi(v.type) for v in carried]
        for f, v0, v1 in zip(finals, carried, new, strict=True):
            f.add_incoming(v0, pre)
            f.add_incoming(v1, end)
        return finals

    def wavefront(self, n_sec, n):
        """Step ``t`` runs section ``s`` on sample ``t - s`` (needs ``n >= n_sec``; shorter
        blocks go to :func:`_pair_scalar_into`).

        ``pend[s]`` carries section ``s - 1``'s output to section ``s`` for the next
        step; the first and last ``n_sec - 1`` steps (ramp up, ramp down) run only the
        sections that have a sample, so the block ends with the plain TDF-II state.
        """
        co = self.load_coefs(n_sec)
        z = self.load_state(n_sec)
        pend = [None] * n_sec
        for t in range(n_sec - 1):  # ramp up: sections 0..t
            nxt = [None] * n_sec
            for s in range(t + 1):
                v = self.load_x(_c64(t)) if s == 0 else pend[s]
                nxt[s + 1] = self.section(co, z, s, v)
            pend = nxt

        def body(t, carried):
            zz = carried[: 2 * n_sec]
            p = [None, *carried[2 * n_sec :]]
            nxt = [None] * n_sec
            for s in range(n_sec):
                r = self.section(co, zz, s, self.load_x(t) if s == 0 else p[s])
                if s + 1 < n_sec:
                    nxt[s + 1] = r
                else:
                    self.store_y(self.b.sub(t, _c64(n_sec - 1)), r)
            return zz + nxt[1:]

        carried = self.loop(_c64(n_sec - 1), n, z + pend[1:], body)
        z = carried[: 2 * n_sec]
        pend = [None, *carried[2 * n_sec :]]
        for e in range(1, n_sec):  # ramp down: sections e.. finish the last samples
            nxt = [None] * n_sec
            for s in range(e, n_sec):
                r = self.section(co, z, s, pend[s])
                if s + 1 < n_sec:
                    nxt[s + 1] = r
                else:
                    self.store_y(self.b.add(n, _c64(e - n_sec)), r)
            pend = nxt
        self.store_state(z)


def _cascade_intrinsic(max_sections):
    """The cascade of at most ``max_sections`` sections as an intrinsic: one wavefront
    is generated per section count up to ``max_sections`` (their ramps grow as the
    square of the count), so a caller whose cascades are short (the K-weighting's two
    sections) compiles only those."""

    @intrinsic
    def cascade_pair_into(typingctx, x0, x1, y0, y1, coefs, z):
        """Filter channels ``x0, x1`` through ``coefs`` [shape=(sections <= the
        generated maximum, 5)] rows ``b0 b1 b2 a1 a2`` (:func:`cascade_coefs`), from state
        ``z``; needs ``n >= sections``.

        Writes
        ------
        y0, y1 : the filtered channels (may be ``x0, x1`` themselves)
        z : float64 [shape=(sections, 2, 2)] the state (section, register, lane), updated
        """
        arrays = (x0, x1, y0, y1, coefs, z)
        if not all(
            isinstance(a, types.Array) and a.dtype == types.float64 and a.layout == "C"
            for a in arrays
        ):
            return None
        if (x0.ndim, x1.ndim, y0.ndim, y1.ndim, coefs.ndim, z.ndim) != (1, 1, 1, 1, 2, 3):
            return None
        sig = types.void(*arrays)

        def codegen(context, builder, signature, args):
            typed = zip(signature.args, args, strict=True)
            arrs = [context.make_array(t)(context, builder, v) for t, v in typed]
            n = cgutils.unpack_tuple(builder, arrs[0].shape, 1)[0]
            n_sec = cgutils.unpack_tuple(builder, arrs[4].shape, 2)[0]
            em = _CascadeEmitter(builder, *[a.data for a in arrs])
            after = builder.append_basic_block("sos_after")
            switch = builder.switch(n_sec, after)
            for s in range(1, max_sections + 1):
                block = builder.append_basic_block(f"sos_{s}_sections")
                switch.add_case(ir.Constant(n_sec.type, s), block)
                builder.position_at_end(block)
                em.wavefront(s, n)
                builder.branch(after)
            builder.position_at_end(after)
            return context.get_dummy_value()

        return sig, codegen

    return cascade_pair_into


#: The cascade of at most MAX_SECTIONS sections (more: nothing; callers group longer
#: cascades).
_cascade_pair_into = _cascade_intrinsic(MAX_SECTIONS)
#: The same for cascades of at most two sections (the K-weighting).
_cascade2_pair_into = _cascade_intrinsic(2)


@jit(inline=True)
def _pair_scalar_into(x0, x1, y0, y1, coefs, z):
    """What :func:`_cascade_pair_into` computes, as plain loops, sample-major, one
    lane after the other: the same operations in the same order, so the same bits. For
    blocks shorter than the cascade (the wavefront needs ``n >= sections``) and for
    coverage runs with ``NUMBA_DISABLE_JIT=1``, where an intrinsic has no Python form.

    Writes
    ------
    y0, y1, z : as :func:`_cascade_pair_into`
    """
    n = x0.shape[0]
    inputs = (x0.copy(), x1.copy())  # the outputs may be the inputs
    outputs = (y0, y1)
    for lane in range(2):
        xc = inputs[lane]
        yc = outputs[lane]
        for i in range(n):
            v = xc[i]
            for s in range(coefs.shape[0]):
                r = coefs[s, 0] * v + z[s, 0, lane]
                z[s, 0, lane] = coefs[s, 1] * v - coefs[s, 3] * r + z[s, 1, lane]
                z[s, 1, lane] = coefs[s, 2] * v - coefs[s, 4] * r
                v = r
            yc[i] = v


@jit(inline=True)
def _pair_into(x0, x1, y0, y1, coefs, z):
    """Two channels through one group of at most MAX_SECTIONS sections.

    Writes
    ------
    y0, y1, z : as :func:`_cascade_pair_into`
    """
    if x0.shape[0] < coefs.shape[0]:
        _pair_scalar_into(x0, x1, y0, y1, coefs, z)
    else:
        _cascade_pair_into(x0, x1, y0, y1, coefs, z)


@jit(inline=True)
def _pair2_into(x0, x1, y0, y1, coefs, z):
    """:func:`_pair_into` for at most two sections (the K-weighting).

    Writes
    ------
    y0, y1, z : as :func:`_cascade_pair_into`
    """
    if x0.shape[0] < coefs.shape[0] or coefs.shape[0] > 2:
        _pair_scalar_into(x0, x1, y0, y1, coefs, z)  # short block, or a longer cascade
    else:
        _cascade2_pair_into(x0, x1, y0, y1, coefs, z)


if numba.config.DISABLE_JIT:
    _pair_into = _pair2_into = _pair_scalar_into

#: Two channels (1-D, C-contiguous float64) through one group of at most MAX_SECTIONS
#: sections: ``cascade_pair_into(x0, x1, y0, y1, coefs, z)`` with ``coefs``
#: [shape=(m, 5)] from :func:`cascade_coefs` and ``z`` [shape=(m, 2, 2)] from
#: :func:`pair_state`. Writes ``y0``, ``y1`` and the state ``z`` (section, register,
#: lane) in place. For kernels that filter and then reduce without a full-size output.
cascade_pair_into = _pair_into
#: :data:`cascade_pair_into` specialised for cascades of at most two sections (the
#: K-weighting): it generates only those wavefronts, 0.3 s less of a first run's
#: compile. A longer cascade still filters correctly, one section after another.
cascade2_pair_into = _pair2_into


@jit(inline=True)
def cascade_coefs(sos, g0, m):
    """Sections ``g0 .. g0 + m - 1`` of ``sos`` as the rows ``b0 b1 b2 a1 a2`` of
    :data:`cascade_pair_into` (``a0 == 1`` is dropped), shape ``(m, 5)``."""
    coefs = np.empty((m, 5))
    for s in range(m):
        coefs[s, 0] = sos[g0 + s, 0]
        coefs[s, 1] = sos[g0 + s, 1]
        coefs[s, 2] = sos[g0 + s, 2]
        coefs[s, 3] = sos[g0 + s, 4]
        coefs[s, 4] = sos[g0 + s, 5]
    return coefs


@jit(inline=True)
def pair_state(zf, c, c1, g0, m):
    """The state of channels ``c``, ``c1`` for sections ``g0 .. g0 + m - 1`` of a
    ``(channels, sections, 2)`` state, as :data:`cascade_pair_into` takes it: shape
    ``(m, 2, 2)``, (section, register, lane)."""
    z = np.empty((m, 2, 2))
    for s in range(m):
        for k in range(2):
            z[s, k, 0] = zf[c, g0 + s, k]
            z[s, k, 1] = zf[c1, g0 + s, k]
    return z


@jit(inline=True)
def store_pair_state_into(zf, z, c, c1, g0):
    """The inverse of :func:`pair_state`.

    Writes
    ------
    zf : float64 [shape=(channels, sections, 2)] channels ``c``, ``c1``, sections
        ``g0 .. g0 + m - 1`` from ``z`` [shape=(m, 2, 2)]
    """
    for s in range(z.shape[0]):
        for k in range(2):
            zf[c, g0 + s, k] = z[s, k, 0]
            zf[c1, g0 + s, k] = z[s, k, 1]


@jit
def sos_filter_into(x, sos, zi, y):
    """``auralis_batch.filters.sos_filter`` into a caller's array; returns ``zf``. ``x`` must be
    C-contiguous float64; ``y`` may be ``x``.

    Writes
    ------
    y : float64 [shape=(channels, n), C-contiguous] the filtered signal
    """
    n_ch = x.shape[0]
    n_sec = sos.shape[0]
    zf = zi.copy()
    if n_sec == 0:
        for c in range(n_ch):
            for i in range(x.shape[1]):
                y[c, i] = x[c, i]
        return zf
    for g0 in range(0, n_sec, MAX_SECTIONS):
        m = min(g0 + MAX_SECTIONS, n_sec) - g0
        coefs = cascade_coefs(sos, g0, m)
        src = x if g0 == 0 else y
        for c in range(0, n_ch, 2):
            # an odd last channel runs in both lanes (same input, same state)
            c1 = c + 1 if c + 1 < n_ch else c
            z = pair_state(zf, c, c1, g0, m)
            _pair_into(src[c], src[c1], y[c], y[c1], coefs, z)
            store_pair_state_into(zf, z, c, c1, g0)
    return zf
