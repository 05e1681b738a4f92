"""mdps.Detector: the same numbers as `mdps score`, numpy conversions, errors,
callbacks and the GIL."""
import csv
import json
import os
import struct
import threading
import time
import zlib

import numpy as np
import pytest

import mdps
from conftest import FAST, as_flags, run_cli

THRESHOLDS = dict(image_threshold=0.45, pixel_threshold=0.3)


def write_png(path, a):
    """An 8-bit RGB (H x W x 3) or gray (H x W) PNG, written with the standard
    library (zlib, CRCs), so the test needs no imaging package."""
    h, w = a.shape[:2]
    color = 2 if a.ndim == 3 else 0
    raw = b"".join(b"\x00" + np.ascontiguousarray(a[y]).tobytes() for y in range(h))

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, color, 0, 0, 0))
                + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
    return str(path)


def some_images(tiny, tmp_path):
    """Four images of different sizes and kinds: two test images of the data
    set, a random non-square RGB and a random gray image (all PNG: the
    engine decodes PNG, JPEG and BMP only)."""
    root, _ = tiny
    rng = np.random.default_rng(5)
    return [
        f"{root}/test/blob/000.png",
        f"{root}/test/good/001.png",
        write_png(tmp_path / "rgb.png", rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)),
        write_png(tmp_path / "gray.png", rng.integers(0, 256, (24, 20), dtype=np.uint8)),
    ]


def cli_scores(model, paths, out, settings):
    run_cli("score", "--model", model, "--images", *paths, "--out", out, "--quiet", *as_flags(settings))
    with open(out / "scores.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["file"] for r in rows] == paths
    return rows


def test_streamed_jsonl_equals_score_batch(tiny, tmp_path):
    """`mdps score --jsonl` streams batch by batch (two batches of 3 and 1
    here); each line has exactly the keys file, score, decision, map, and the
    scores equal one score_batch call bit for bit."""
    root, model = tiny
    paths = some_images(tiny, tmp_path)
    settings = dict(FAST, batch=3, **THRESHOLDS)
    out = tmp_path / "out"
    run_cli("score", "--model", model, "--images", *paths, "--out", out, "--quiet", "--jsonl", out / "s.jsonl",
            *as_flags(settings))
    with open(out / "s.jsonl") as f:
        lines = [json.loads(line) for line in f]
    results = mdps.Detector(model, **settings).score_batch([mdps.load_image(p) for p in paths])
    assert [list(line) for line in lines] == [["file", "score", "decision", "map"]] * len(paths)
    for p, line, r in zip(paths, lines, results):
        assert line["file"] == p
        assert np.float32(line["score"]) == np.float32(r.score), p
        assert line["decision"] == ("NG" if r.anomalous else "OK")
        assert os.path.isfile(line["map"]) and line["map"].endswith("_heatmap.png")


@pytest.mark.parametrize("protocol", ["calibrated", "authors"])
@pytest.mark.parametrize("batch", [1, 3])
def test_scores_equal_mdps_score_bit_for_bit(tiny, tmp_path, batch, protocol):
    root, model = tiny
    paths = some_images(tiny, tmp_path)
    settings = dict(FAST, batch=batch, protocol=protocol, **THRESHOLDS)
    rows = cli_scores(model, paths, tmp_path / "out", settings)
    det = mdps.Detector(model, **settings)
    # The command scores all files in one call, in groups of `batch`.
    results = det.score_batch([mdps.load_image(p) for p in paths])
    for p, row, r in zip(paths, rows, results):
        # %.9g round-trips a float32 exactly.
        assert np.float32(row["score"]) == np.float32(r.score), p
        assert row["decision"] == ("NG" if r.anomalous else "OK")
        # The mask (at the image's size) and the reconstruction the command wrote.
        stem = p.rsplit("/", 1)[1].rsplit(".", 1)[0]
        mask_png = mdps.load_image(tmp_path / "out" / f"{stem}_mask.png")[:, :, 0]
        assert mask_png.shape == r.map.shape
        np.testing.assert_array_equal(mask_png > 127, r.mask)
        np.testing.assert_array_equal(mdps.load_image(tmp_path / "out" / f"{stem}_recon.png"), r.reconstruction)
    if protocol == "calibrated":
        # The default: an image's score depends only on the image, so score()
        # of any image alone equals its place in a call of any batch.
        for p, r in zip(paths, results):
            assert det.score(mdps.load_image(p)).score == r.score, p
    elif batch == 1:
        # score() is a call of one batch: it equals the first image of a
        # call (batch b draws the noise streams of b, so the others differ).
        assert det.score(mdps.load_image(paths[0])).score == results[0].score
        assert det.score(mdps.load_image(paths[1])).score != results[1].score


def test_numpy_layouts_and_dtypes_score_the_same(tiny):
    _, model = tiny
    det = mdps.Detector(model, **FAST)
    rng = np.random.default_rng(11)
    rgb = rng.integers(0, 256, (36, 30, 3), dtype=np.uint8)
    base = det.score(rgb).score
    # uint16: the high byte counts (as a 16-bit PNG read by `mdps score`).
    u16 = (rgb.astype(np.uint16) << 8) | rng.integers(0, 256, rgb.shape, dtype=np.uint16)
    assert det.score(u16).score == base
    # float in [0, 1]: round(255 x).
    assert det.score(rgb.astype(np.float32) / 255).score == base
    assert det.score(rgb / 255.0).score == base
    # RGBA: alpha ignored.
    rgba = np.concatenate([rgb, rng.integers(0, 256, (36, 30, 1), dtype=np.uint8)], axis=2)
    assert det.score(rgba).score == base
    # Not contiguous: a strided view scores as its copy.
    wide = np.zeros((36, 60, 3), np.uint8)
    wide[:, ::2] = rgb
    assert det.score(wide[:, ::2]).score == base
    # Gray: H x W equals H x W x 1 equals the gray value in all three channels.
    gray = rgb[:, :, 1]
    g = det.score(gray).score
    assert det.score(gray[:, :, None]).score == g
    assert det.score(np.repeat(gray[:, :, None], 3, axis=2)).score == g
    # A different image scores differently (the checks above can fail).
    assert det.score(255 - rgb).score != base


def test_result_at_the_image_size(tiny):
    _, model = tiny
    det = mdps.Detector(model, **FAST, **THRESHOLDS)
    assert det.image_size == 32
    assert det.image_threshold == pytest.approx(0.45)
    assert det.pixel_threshold == pytest.approx(0.3)
    img = np.random.default_rng(2).integers(0, 256, (50, 70, 3), dtype=np.uint8)
    r = det.score(img)
    assert isinstance(r.score, float)
    assert r.map.shape == (50, 70) and r.map.dtype == np.float32
    assert r.model_map.shape == (32, 32) and r.model_map.dtype == np.float32
    assert r.reconstruction.shape == (32, 32, 3) and r.reconstruction.dtype == np.uint8
    assert r.mask.shape == (50, 70) and r.mask.dtype == np.bool_
    np.testing.assert_array_equal(r.mask, r.map > np.float32(0.3))
    assert r.anomalous == (r.score > 0.45)
    # The map is the model map resized: its range stays inside the model map's.
    assert r.map.min() >= r.model_map.min() - 1e-6 and r.map.max() <= r.model_map.max() + 1e-6
    # No thresholds: no decision, no mask.
    r0 = mdps.Detector(model, **FAST).score(img)
    assert r0.anomalous is None and r0.mask is None and r0.score == r.score
    assert "ScoreResult(score=" in repr(r)


def test_settings_reach_the_engine(tiny):
    _, model = tiny
    det = mdps.Detector(model, lambda_=0.25, t_start=150, layers=[3], variant="paper", seed=9, **{"ddim-eta": 0.5})
    s = det.settings
    assert s["lambda"] == pytest.approx(0.25)
    assert s["t_start"] == 150 and s["layers"] == [3] and s["variant"] == "paper" and s["seed"] == 9
    assert s["ddim_eta"] == pytest.approx(0.5)
    assert s["guidance_norm"] == "squared"  # follows the variant, as on the command line


def test_errors_carry_the_engine_message(tiny, tmp_path):
    _, model = tiny
    with pytest.raises(mdps.Error, match="nope.safetensors"):
        mdps.Detector(tmp_path / "nope.safetensors")
    with pytest.raises(mdps.Error, match="unknown setting 'bogus'"):
        mdps.Detector(model, bogus=1)
    with pytest.raises(mdps.Error, match="t-start"):
        mdps.Detector(model, t_start=5000)
    with pytest.raises(mdps.Error, match="threads"):
        mdps.Detector(model, threads="many")
    assert issubclass(mdps.Error, RuntimeError)
    det = mdps.Detector(model, **FAST)
    with pytest.raises(TypeError, match="int32"):
        det.score(np.zeros((8, 8, 3), np.int32))
    with pytest.raises(ValueError, match="C in 1, 3, 4"):
        det.score(np.zeros((8, 8, 2), np.uint8))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        det.score(np.full((8, 8), 2.0))
    with pytest.raises(ValueError, match="finite"):
        det.score(np.full((8, 8), np.nan))
    with pytest.raises(ValueError, match="no images"):
        det.score_batch([])


def test_progress_callback_and_its_exceptions(tiny):
    _, model = tiny
    imgs = [np.full((32, 32, 3), v, np.uint8) for v in (10, 120, 230)]
    # The authors' protocol reports per batch of images, the calibrated one
    # (the default) per image.
    for protocol, expected in (("authors", [(2, 3), (3, 3)]), ("calibrated", [(1, 3), (2, 3), (3, 3)])):
        seen = []
        mdps.Detector(model, **dict(FAST, batch=2, protocol=protocol)).score_batch(imgs, progress=seen.append)
        assert [(p.done, p.total) for p in seen] == expected, protocol
    det = mdps.Detector(model, **dict(FAST, batch=2))
    assert all(isinstance(p, mdps.ImageProgress) and p.seconds >= 0 for p in seen)

    class Stop(Exception):
        pass

    def stop(p):
        raise Stop("from the callback")

    with pytest.raises(Stop):
        det.score_batch(imgs, progress=stop)
    # The detector still works after an interrupted call.
    assert det.score(imgs[0]).score == det.score(imgs[0]).score


def test_gil_is_released_while_scoring(tiny):
    _, model = tiny
    det = mdps.Detector(model, **dict(FAST, samples=2))
    img = np.random.default_rng(4).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    span = []

    def work():
        t0 = time.perf_counter()
        det.score(img)
        span.extend([t0, time.perf_counter()])

    t = threading.Thread(target=work)
    stamps = []
    t.start()
    while t.is_alive() and len(stamps) < 5_000_000:
        stamps.append(time.perf_counter())
    t.join()
    t0, t1 = span
    middle = [s for s in stamps if t0 + 0.25 * (t1 - t0) < s < t1 - 0.25 * (t1 - t0)]
    # With the GIL held for the call, this thread could not run in its middle half.
    assert t1 - t0 > 0.05 and len(middle) > 100, (t1 - t0, len(middle))
