"""Numba kernels for auralis-batch.

Arrays in, arrays out: no I/O, no logging, no validation, no classes. Audio is
``(channels, samples)`` C-contiguous float64. Stateful kernels take their state and
return the new state so long files stream in blocks. This package never imports
``auralis_batch``; the orchestration layer validates inputs and calls in here.
"""
