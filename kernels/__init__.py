"""Numba kernels for auralis-batch, installed as ``auralis_batch.kernels``.

A kernel is a jitted function of arrays and scalars: no I/O, no logging, no
validation, no classes. This package never imports ``auralis_batch``; the wrappers
there validate, fix the layout, allocate, call in here and check the result. Audio is
``(channels, samples)`` C-contiguous float64.

The kernel convention. Every function here is one of two kinds, and its name says
which:

1. **State in, state out** (the default). It leaves every argument as it found it and
   returns its results followed by the new state, in the order the state came in:
   ``y, trace, state = compressor(x, params, state, want_trace)``, the way
   ``scipy.signal.sosfilt`` returns ``(y, zf)``.
   Streaming is feeding each call the state the previous one returned; blocks of any
   size then give the samples of one piece. A kernel that needs to update its state
   works on a copy (``state.copy()``) and returns that.
2. **Out-arguments, visibly marked.** A function that writes into any of its
   arguments (an output the caller allocated, scratch, state updated in place) has a
   name ending in ``_into`` and a ``Writes`` section in its docstring listing every
   argument it writes: ``sos_filter_into(x, sos, zi, y)`` writes ``y``;
   ``quantize_into`` writes ``pcm`` and ``back``. For outputs the caller owns (NumPy
   asks the kernel for huge pages, a view into a larger array) and for the steps of a
   kernel that fill its scratch.

Named layouts. A parameter or state array with a fixed layout has named index
constants in its kernel's module (``COMP_THRESHOLD``, ``LIM_CEILING``,
``LIM_N_PARAMS``, ...), which the wrapper imports: no raw index crosses from a kernel
to its wrapper.

Compile options come only from :func:`kernels._jit.jit`, which documents each
variation a kernel may ask for (fused multiply-adds, reassociated sums, IEEE division,
inlining) and why.
"""
