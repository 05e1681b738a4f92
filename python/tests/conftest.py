"""Fixtures of the Python suite: a toy data set and a tiny model trained on it
in a few steps (seconds on 2 cores), made once per session, and the ``mdps``
command line the package is compared with.

MDPS_CLI names the ``mdps`` executable to compare against (CI: the one of the
release build, tools/scripts/run_tests.sh); unset, the package's own copy of
the command line runs (``python -m mdps``).
"""
import os
import shlex
import subprocess
import sys

import pytest

import mdps

# Fast protocol settings for 32 x 32 images: two rounds of 100 steps at
# stride 50, small blur. Shared by the package and the command line.
FAST = dict(round1_t=100, t_start=100, skip=50, blur_sigma=1, blur_kernel=9, threads=2)


def cli_command():
    exe = os.environ.get("MDPS_CLI")
    return shlex.split(exe) if exe else [sys.executable, "-m", "mdps"]


def run_cli(*args):
    """Runs the command line; fails the test with its output when it fails."""
    cmd = cli_command() + [str(a) for a in args]
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if p.returncode != 0:
        pytest.fail(f"{' '.join(cmd)} exited {p.returncode}:\n{p.stdout}\n{p.stderr}")
    return p.stdout


def as_flags(settings):
    out = []
    for k, v in settings.items():
        out += ["--" + k.rstrip("_").replace("_", "-"), str(v)]
    return out


@pytest.fixture(scope="session")
def tiny(tmp_path_factory):
    """(data set root, model path): 8 training images, 3 good and 2 of each
    defect type in test, 32 x 32; a U-Net of base 32 trained for 2 steps."""
    d = tmp_path_factory.mktemp("tiny")
    root = mdps.demo_dataset(d / "cat", size=32, train=8, test_good=3, test_defect=2, seed=3)
    model = d / "model.safetensors"
    mdps.train(root, model, image_size=32, base_channels=32, channel_mult=[1, 2], res_blocks=1, attention=[],
               batch=4, steps=2, lr=1e-3, threads=2)
    return str(root), str(model)
