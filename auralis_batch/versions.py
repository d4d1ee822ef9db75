"""What names an analysis record, in a module light enough for the cache's fast path.

A fully cached ``analyze`` builds its cache keys from these and answers without
loading NumPy's DSP, Numba or the kernels (:mod:`auralis_batch.fingerprint` imports
them from here).
"""

from __future__ import annotations

#: Bumped whenever the fingerprint's content changes; part of every cache key.
#: 9: loudness range from short-term values every 100 ms (EBU Tech 3342); 8: tempo's
#: dotted reference yields to the beat; 7: one-pole DC blocker; 6: DC
#: offset removed; 5: tempo tatum; 4: backbeat; 3: beat-level tempo, candidates;
#: 2: bands.
FINGERPRINT_VERSION = 9
#: Revision of the meter's channel weights, kept in each cached record (under
#: ``WEIGHTS_KEY``): a record of a file with 7 or more channels measured with another
#: revision is a miss. 2: 7.1's back pair and 6.1's back centre weigh 1.0 (BS.1770-4
#: Table 4), and Ogg files' channels are read in WAV order. Other layouts did not
#: change, so their records (the whole cache of a music library) stay valid.
CHANNEL_WEIGHTS_REVISION = 2
WEIGHTS_KEY = "channel_weights_revision"
#: Bumped whenever the rules that compute a track's parameters from its analysis
#: change (``adaptive``, ``--reference``): part of those runs' settings, so a re-run
#: masters again what the older rules made ("[replaced] ...: the adaptive and
#: reference rules changed"); fixed presets do not depend on it. 2: the matching EQ
#: follows the octave-smoothed difference within +9/-12 dB, a short reference keeps
#: the track's own range, adaptive boosts held back far under a band's share.
PARAMETER_RULES_VERSION = 2
#: The rate the fingerprint is computed at (sources above 88.2 kHz are decimated).
ANALYSIS_SAMPLE_RATE = 44100
#: What ``tempo_bpm`` says when tempo was not estimated.
DEFAULT_TEMPO_BPM = 120.0
#: The fingerprint's bands (``band_energy``: the share of spectral power in each).
BAND_EDGES_HZ: dict[str, tuple[float, float]] = {
    "sub_bass": (20.0, 60.0),
    "bass": (60.0, 250.0),
    "low_mid": (250.0, 500.0),
    "mid": (500.0, 2000.0),
    "upper_mid": (2000.0, 4000.0),
    "presence": (4000.0, 8000.0),
    "air": (8000.0, 20000.0),
}

#: Nominal third-octave band centres, Hz (IEC 61260 base-10: 1000 * 10 ** (k / 10)):
#: the bands of a record's long-term spectrum (and of the matching EQ).
THIRD_OCTAVE_HZ: tuple[float, ...] = tuple(1000.0 * 10.0 ** (k / 10.0) for k in range(-17, 14))
#: The record's key for the long-term spectrum (dB per band of THIRD_OCTAVE_HZ).
SPECTRUM_KEY = "spectrum_db"
#: The record's long-term spectrum over one chunk of frames in ``match.SPARSE_EVERY``
#: alone, the chunks a master's spectrum for the report is taken on: the report plots
#: the two over the same music (a record with a fingerprint; optional).
SPARSE_SPECTRUM_KEY = "spectrum_sparse_db"
#: The record's loudness over time (``{"step_s": s, "lufs": [...]}``).
CURVE_KEY = "loudness_curve"
