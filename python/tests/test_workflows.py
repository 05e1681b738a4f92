"""mdps.train, mdps.evaluate, mdps.cli and the settings mapping."""
import json
import os
import subprocess
import sys

import pytest

import mdps
from mdps import _settings
from conftest import FAST, as_flags, run_cli


def test_train_result_progress_and_checkpoint(tiny, tmp_path):
    root, _ = tiny
    seen = []
    r = mdps.train(root, tmp_path / "m.safetensors", image_size=32, base_channels=32, channel_mult=[1, 2],
                   res_blocks=1, attention=[], batch=4, steps=3, seed=1, threads=2, progress=seen.append)
    assert [p.step for p in seen] == [1, 2, 3] and seen[-1].done and not seen[0].done
    assert all(isinstance(p, mdps.TrainProgress) and p.total_steps == 3 for p in seen)
    assert r["final_step"] == 3 and r["first_step"] == 0 and r["images"] == 8 and r["batch"] == 4
    assert len(r["losses"]) == 3 and [p.loss for p in seen] == r["losses"]
    assert r["config"]["base_channels"] == 32 and r["config"]["img_size"] == 32
    assert os.path.getsize(r["out_path"]) > 0 and os.path.exists(r["csv_path"])
    # Resuming continues from the checkpoint's step.
    r2 = mdps.train(None, tmp_path / "m2.safetensors", resume=r["out_path"], steps=4, threads=2)
    assert (r2["first_step"], r2["final_step"]) == (3, 4)
    # The trained model scores.
    assert isinstance(mdps.Detector(r["out_path"], **FAST).score(mdps.load_image(f"{root}/test/good/000.png")).score,
                      float)


def test_train_errors(tiny, tmp_path):
    root, _ = tiny
    with pytest.raises(mdps.Error, match="unknown option 'bogus'"):
        mdps.train(root, tmp_path / "m.safetensors", steps=1, bogus=2)
    with pytest.raises(mdps.Error, match="not both"):
        mdps.train(root, tmp_path / "m.safetensors", steps=1, epochs=1)
    with pytest.raises(mdps.Error, match="no-such-folder"):
        mdps.train(tmp_path / "no-such-folder", tmp_path / "m.safetensors", steps=1)
    with pytest.raises(mdps.Error, match="image_size"):
        mdps.train(root, tmp_path / "m.safetensors", steps=1, image_size="big")
    assert not (tmp_path / "m.safetensors").exists()


def test_evaluate_equals_mdps_eval(tiny, tmp_path):
    root, model = tiny
    seen = []
    report = mdps.evaluate(model, root, progress=seen.append, **FAST)
    # The calibrated protocol (the default) first takes the normal statistics
    # from the 8 training images (2 passes), then scores the 7 test images.
    assert [(p.done, p.total) for p in seen if p.total == 7][-1] == (7, 7)
    assert {p.total for p in seen} == {8, 7} and seen[-1].total == 7
    for key in ("image_auroc", "pixel_auroc", "aupro", "image_f1_max", "pixel_f1_max", "image_ap", "pixel_ap"):
        assert 0.0 <= report[key] <= 1.0, key
    # anomalib's names for the same values.
    for theirs, ours in (("image_AUROC", "image_auroc"), ("pixel_AUROC", "pixel_auroc"), ("pixel_AUPRO", "aupro"),
                         ("image_F1Max", "image_f1_max"), ("pixel_F1Max", "pixel_f1_max"), ("image_AP", "image_ap"),
                         ("pixel_AP", "pixel_ap")):
        assert report[theirs] == report[ours], theirs
    assert report["images"] == 7 and set(report["per_type"]) == {"blob", "scratch"}
    assert report["settings"]["t_start"] == 100 and report["settings"]["skip"] == 50
    run_cli("eval", "--model", model, "--dataset", root, "--out", tmp_path / "cli", "--no-panels", "--quiet",
            *as_flags(FAST))
    with open(tmp_path / "cli" / "report.json") as f:
        expected = json.load(f)
    for key in ("image_auroc", "pixel_auroc", "aupro", "image_f1_max", "pixel_f1_max", "per_type"):
        assert report[key] == expected[key], key
    # With an output folder the files stay, panels included by default.
    mdps.evaluate(model, root, tmp_path / "kept", limit=1, **FAST)
    assert (tmp_path / "kept" / "report.json").exists() and (tmp_path / "kept" / "images.csv").exists()
    assert len(os.listdir(tmp_path / "kept" / "panels")) == 3


def test_config_file_passes_through(tiny, tmp_path):
    """`config=` is `--config FILE`: a run written down repeats the keywords."""
    root, model = tiny
    cfg = tmp_path / "run.toml"
    cfg.write_text("".join(f"{k.replace('_', '-')} = {v}\n" for k, v in FAST.items()) + "limit = 1\n")
    from_file = mdps.evaluate(model, root, config=cfg)
    from_keywords = mdps.evaluate(model, root, limit=1, **FAST)
    assert from_file["settings"] == from_keywords["settings"] and from_file["settings"]["t_start"] == 100
    assert from_file["image_auroc"] == from_keywords["image_auroc"]
    assert from_file["pixel_ap"] == from_keywords["pixel_ap"]


def test_evaluate_errors(tiny, tmp_path):
    root, model = tiny
    with pytest.raises(mdps.Error, match="no-such-data"):
        mdps.evaluate(model, tmp_path / "no-such-data")
    with pytest.raises(mdps.Error, match="--bogus"):
        mdps.evaluate(model, root, bogus=1)
    with pytest.raises(mdps.Error, match="mask-scope"):
        mdps.evaluate(model, root, mask_scope="everything", **FAST)


def test_cli_in_process_and_python_m(tiny, tmp_path):
    assert mdps.cli("--version").strip() == f"mdps {mdps.__version__}"
    assert "--t-start" in mdps.cli("score", "--help")
    with pytest.raises(mdps.Error, match="--model"):
        mdps.cli("score", "--images", "x.png", "--out", str(tmp_path))
    p = subprocess.run([sys.executable, "-m", "mdps", "no-such-command"], capture_output=True, text=True)
    assert p.returncode == 106 and "subcommand is required" in p.stderr  # as the native command
    p = subprocess.run([sys.executable, "-m", "mdps", "info", "--help"], capture_output=True, text=True)
    assert p.returncode == 0 and "info" in p.stdout


def test_demo_dataset_and_load_image(tmp_path):
    root = mdps.demo_dataset(tmp_path / "d", size=24, train=2, test_good=1, test_defect=1, seed=2)
    img = mdps.load_image(os.path.join(root, "test", "blob", "000.png"))
    assert img.shape == (24, 24, 3) and img.dtype.name == "uint8" and img.std() > 0
    assert os.path.exists(os.path.join(root, "ground_truth", "blob", "000_mask.png"))
    with pytest.raises(mdps.Error, match="missing.png"):
        mdps.load_image(tmp_path / "missing.png")


def test_settings_mapping():
    assert _settings.flag_name("lambda_") == "lambda"
    assert _settings.flag_name("t_start") == "t-start"
    assert _settings.flag_name("t-start") == "t-start"
    assert _settings.flag_text("layers", [2, 3]) == "2,3"
    assert _settings.flag_text("attention", []) == ""
    assert _settings.flag_text("adamw", True) == "true"
    assert _settings.flag_text("lambda", 0.12) == "0.12"
    assert _settings.flag_text("seed", 2**63) == str(2**63)
    assert _settings.pairs({"lambda_": 0.1, "preset": None, "t_start": 5}) == [("lambda", "0.1"), ("t-start", "5")]
    assert _settings.flags({"no_panels": True, "quiet": False, "limit": 2}) == ["--no-panels", "--limit", "2"]
    with pytest.raises(TypeError, match="seed"):
        _settings.flag_text("seed", object())
