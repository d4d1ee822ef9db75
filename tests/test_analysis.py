"""`analyze`: the record, laziness of tempo, caching, and the command."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

import auralis_batch as ab
from auralis_batch.cli import app

from .conftest import music_like

runner = CliRunner()
RECORD_KEYS = {
    "path",
    "duration_s",
    "sample_rate",
    "channels",
    "integrated_lufs",
    "true_peak_dbtp",
    "lra_lu",
    "sample_peak_dbfs",
    "tempo_bpm",
    "tempo_confidence",
    "fingerprint",
    "fingerprint_version",
    "seconds",
}


def test_api_on_array_and_file_agree(write_audio):
    x = music_like(seconds=6.0)
    path = write_audio("a.wav", x, subtype="FLOAT")
    from_array = ab.analyze(x, sample_rate=44100)
    from_file = ab.analyze(str(path))
    assert RECORD_KEYS <= set(from_array) and RECORD_KEYS <= set(from_file)
    assert from_file["path"] == str(path) and from_array["path"] is None
    assert from_file["integrated_lufs"] == pytest.approx(from_array["integrated_lufs"], abs=0.01)
    assert from_file["fingerprint"]["spectral_centroid_hz"] == pytest.approx(
        from_array["fingerprint"]["spectral_centroid_hz"], rel=1e-4
    )
    assert from_file["sample_rate"] == 44100 and from_file["channels"] == 2


def test_tempo_is_lazy():
    x = music_like(seconds=8.0)
    rec = ab.analyze(x, sample_rate=44100, tempo=False)
    assert rec["tempo_bpm"] == 120.0 and rec["tempo_confidence"] == 0.0
    assert rec["fingerprint"]["tempo_bpm"] == 120.0


def test_array_needs_a_sample_rate():
    with pytest.raises(ab.AuralisError, match="sample_rate"):
        ab.analyze(np.zeros((2, 100)))


def test_cache_hit_on_second_call_and_after_retag(tmp_path, write_audio):
    from auralis_batch.cache import FingerprintCache

    path = write_audio("song.flac", music_like(seconds=4.0))
    with FingerprintCache(tmp_path / "cache") as cache:
        first = ab.analyze(str(path), cache=cache)
        second = ab.analyze(str(path), cache=cache)
        assert first["cached"] is False and second["cached"] in ("memory", "disk")
        assert second["fingerprint"] == first["fingerprint"]
        # a tempo-off request is answered from the tempo-on entry
        off = ab.analyze(str(path), tempo=False, cache=cache)
        assert off["cached"] and off["tempo_bpm"] == 120.0
    from mutagen.flac import FLAC

    f = FLAC(path)
    f["title"] = "retagged"
    f.save()
    with FingerprintCache(tmp_path / "cache") as cache:
        again = ab.analyze(str(path), cache=cache)  # file changed on disk, audio did not
        assert again["cached"] == "disk"


def test_analyze_command_json_and_errors(tmp_path, write_audio):
    good = write_audio("good.wav", music_like(seconds=4.0))
    bad = tmp_path / "bad.flac"
    bad.write_text("nope")
    res = runner.invoke(app, ["analyze", str(good), str(bad), "--json", "--no-tempo"])
    assert res.exit_code == 1
    recs = json.loads(res.stdout)
    ok = next(r for r in recs if r["path"] == str(good))
    assert RECORD_KEYS <= set(ok)
    assert ok["tempo_bpm"] == 120.0
    failed = next(r for r in recs if r["path"] == str(bad))
    assert set(failed) == {"path", "error"}


def test_analyze_command_csv_and_table(write_audio):
    good = write_audio("good.wav", music_like(seconds=4.0))
    res = runner.invoke(app, ["analyze", str(good), "--csv", "--no-cache"])
    assert res.exit_code == 0
    header = res.stdout.splitlines()[0].split(",")
    assert header[:3] == ["path", "duration_s", "integrated_lufs"]
    res = runner.invoke(app, ["analyze", str(good), "--no-cache"])
    assert res.exit_code == 0 and "good.wav" in res.stdout


def test_analyze_csv_has_every_value_the_json_has_and_each_file_once(write_audio, tmp_path):
    """--csv left out the band energies, sample rate, runner-up tempi and spectrum that
    --json gives, and a file named twice was analysed and printed twice (third sweep)."""
    import csv
    import io

    good = write_audio("lib/good.wav", music_like(seconds=4.0))
    bad = tmp_path / "lib" / "bad.wav"
    bad.write_text("nope")
    for extra in (["--no-cache"], []):  # measured, then answered from the cache
        args = ["analyze", str(good), str(tmp_path / "lib"), str(good), *extra]
        rows = list(csv.DictReader(io.StringIO(runner.invoke(app, [*args, "--csv"]).stdout)))
        (js_bad, js) = json.loads(runner.invoke(app, [*args, "--json"]).stdout)
        # good.wav is inside lib, given too: read as part of it, in its order
        assert [r["path"] for r in rows] == [str(bad), str(good)]
        row = rows[1]
        for key, value in js.items():
            if isinstance(value, bool):  # as JSON writes it, not Python's True
                assert row[key] == ("true" if value else "false"), key
            elif isinstance(value, (int, float)) and key != "seconds":  # two runs' times
                assert float(row[key]) == value, key
        for band, value in js["fingerprint"]["band_energy"].items():
            assert float(row[f"band_energy.{band}"]) == value
        for key, value in js["fingerprint"].items():
            if isinstance(value, float) and key not in ("lra_lu",):  # the meter's is the record's
                assert float(row[key]) == value, key
        spectrum = [float(v) for k, v in row.items() if k.startswith("spectrum_db.") and v]
        assert spectrum == [v for v in js["spectrum_db"] if v is not None]
        for i, c in enumerate(js["tempo_candidates"], start=1):
            assert float(row[f"tempo_candidates.{i}.bpm"]) == c["bpm"]
        assert rows[0]["error"] == js_bad["error"] and rows[0]["integrated_lufs"] == ""
        assert list(row)[:3] == ["path", "duration_s", "integrated_lufs"]
        assert list(row)[-3:] == ["cached", "seconds", "error"]
    res = runner.invoke(app, ["measure", str(good), str(tmp_path / "lib"), "--json"])
    assert [r["input"] for r in json.loads(res.stdout)] == [str(bad), str(good)]
    dat = good.rename(good.with_suffix(".dat"))  # named: read; in its folder: not skipped
    res = runner.invoke(app, ["measure", str(dat), str(tmp_path / "lib"), "--json"])
    assert sorted((r["input"], r["status"]) for r in json.loads(res.stdout)) == [
        (str(bad), "failed"),
        (str(dat), "ok"),
    ]


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_array_with_nan_or_inf_is_refused(bad):
    from auralis_batch.analysis import analyze_array
    from auralis_batch.errors import AudioError

    x = np.zeros((2, 3 * 44100))
    x[1, 70000] = bad
    with pytest.raises(AudioError, match="NaN or infinite"):
        analyze_array(x, 44100)


def test_analyze_json_gives_the_runner_up_tempi(tmp_path):
    from pathlib import Path

    example = Path(__file__).parents[1] / "examples" / "example.flac"
    res = CliRunner().invoke(app, ["analyze", str(example), "--json", "--no-cache"])
    assert res.exit_code == 0, res.output
    (rec,) = json.loads(res.stdout)
    cands = rec["tempo_candidates"]
    assert len(cands) == 2 and all(set(c) == {"bpm", "score"} for c in cands)
    assert cands[0]["score"] >= cands[1]["score"]
    assert all(abs(c["bpm"] - rec["tempo_bpm"]) > 1 for c in cands)  # other levels
    res = CliRunner().invoke(app, ["analyze", str(example), "--json", "--no-cache", "--no-tempo"])
    (rec,) = json.loads(res.stdout)
    assert rec["tempo_bpm"] == 120.0 and rec["tempo_candidates"] == []


# --------------------------------------------------------------------------- decode ahead
def _without_timing(rec: dict) -> dict:
    return {k: v for k, v in rec.items() if k != "seconds"}


def test_decoding_ahead_gives_the_same_record_and_kept_blocks(write_audio):
    """A thread decoding a block ahead changes when the work happens, not what it
    gives: the record (hash included) and the blocks kept for the render."""
    import threading

    from auralis_batch.analysis import analyze_file

    path = write_audio("long.flac", music_like(seconds=8.0))  # several blocks
    before = threading.active_count()
    kept_plain: list[np.ndarray] = []
    kept_ahead: list[np.ndarray] = []
    plain = analyze_file(path, keep_blocks=kept_plain)
    ahead = analyze_file(path, keep_blocks=kept_ahead, decode_ahead=True)
    assert _without_timing(ahead) == _without_timing(plain)
    assert len(kept_ahead) == len(kept_plain) > 1
    for a, b in zip(kept_ahead, kept_plain, strict=True):
        np.testing.assert_array_equal(a, b)
    assert threading.active_count() == before


def test_decoding_ahead_raises_what_the_decoder_or_the_watch_raises(write_audio, tmp_path):
    """A corrupt file, and a batch's deadline raised from inside the thread, reach the
    caller as they would without it; the thread is gone afterwards."""
    import threading

    from auralis_batch.analysis import analyze_file
    from auralis_batch.errors import AuralisError, TrackTimeoutError

    path = write_audio("long.flac", music_like(seconds=8.0))
    cut = tmp_path / "cut.flac"
    cut.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    before = threading.active_count()
    errors = []
    for ahead in (False, True):
        with pytest.raises(AuralisError) as info:
            analyze_file(cut, decode_ahead=ahead)
        errors.append(str(info.value))
    assert errors[0] == errors[1]

    def deadline(blocks):
        for n, block in enumerate(blocks):
            if n == 2:
                raise TrackTimeoutError("timed out (--timeout-per-track); no output written")
            yield block

    with pytest.raises(TrackTimeoutError):
        analyze_file(path, watch=deadline, decode_ahead=True)
    assert threading.active_count() == before


def test_a_cached_record_of_another_rate_or_layout_is_a_miss(write_audio, tmp_path):
    """The content hash is of the samples alone: the same samples at 48 and 44.1 kHz,
    or a mono file whose samples read as a stereo one's, hash alike, and a re-tagged
    file got the other file's record, sample rate and all (a review)."""
    from auralis_batch.analysis import analyze_file
    from auralis_batch.cache import open_cache
    from auralis_batch.recall import cached_record

    src = write_audio("r48.wav", music_like(seconds=3.0), sample_rate=48000)
    with open_cache(tmp_path / "c") as cache:
        content = analyze_file(src, tempo=False, cache=cache)["content_sha256"]
        assert cached_record(cache, content, False, layout=(48000, 2)) is not None
        assert cached_record(cache, content, False, layout=(44100, 2)) is None
        assert cached_record(cache, content, False, layout=(48000, 1)) is None
