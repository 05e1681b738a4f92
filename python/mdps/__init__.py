"""mdps: unsupervised visual anomaly detection with Masked Diffusion Posterior
Sampling, numpy in and numpy out.

    >>> import mdps
    >>> det = mdps.Detector("bundle.safetensors")          # or model + features=...
    >>> r = det.score(image)                               # H x W x 3 uint8 array
    >>> r.score, r.anomalous, r.map.shape                  # map: float32 H x W

The engine is the C++ library of this repository (include/mdps/mdps.h); the
same settings, the same numbers as the ``mdps`` command line: a score here
equals ``mdps score`` on the same pixels bit for bit. Settings are named as
the command line's flags (``t_start=150`` for ``--t-start 150``, ``lambda_``
for ``--lambda``). Failures raise :class:`mdps.Error` with the engine's
message, which names the file or setting at fault. The GIL is released while
the engine works; engine calls from several threads take turns (one process
has one CPU worker pool). See docs/python.md.
"""
from __future__ import annotations

import json
import os
import tempfile
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Sequence, Union

import numpy as np

from . import _core
from ._settings import flags as _flags
from ._settings import pairs as _pairs

__all__ = [
    "Error",
    "Detector",
    "ScoreResult",
    "ImageProgress",
    "TrainProgress",
    "train",
    "evaluate",
    "demo_dataset",
    "load_image",
    "cli",
    "__version__",
]

__version__: str = _core.__version__

#: Raised for every engine failure (a missing or malformed file, a bad
#: setting, bad pixels); a RuntimeError whose message is the engine's.
Error = _core.Error

PathLike = Union[str, "os.PathLike[str]"]

_core._set_package_presets(os.path.join(os.path.dirname(os.path.abspath(__file__)), "presets"))


class ImageProgress(NamedTuple):
    """Progress of scoring or evaluation, after every batch of images."""

    done: int  #: images done
    total: int  #: images in all
    seconds: float  #: since the call began
    pass_: int  #: 0; with ``mask_scope="dataset"`` and in a calibration 1 (round 1 only) then 2; 3: the calibration's feature memory


class TrainProgress(NamedTuple):
    """Progress of training, after every optimiser step."""

    step: int  #: steps done (counting resumed ones)
    total_steps: int  #: the run's target
    epoch: int  #: the epoch being trained (1-based)
    first_step: int  #: where this run started (non-zero when resumed)
    loss: float  #: the last step's loss
    loss_avg: float  #: over the last (up to) 20 steps
    seconds: float  #: since this run's first step began
    images_per_s: float
    eta_s: float  #: estimated seconds left
    done: bool  #: the last call of the run


@dataclass(frozen=True, repr=False)
class ScoreResult:
    """One image's result."""

    #: The image score: larger is more anomalous.
    score: float
    #: True / False against the image threshold (the detector's, from its
    #: bundle or ``image_threshold=``); None without one.
    anomalous: Optional[bool]
    #: The anomaly map, float32 H x W at the input image's size (bilinear from
    #: the model's resolution); larger is more anomalous.
    map: np.ndarray
    #: The defect mask, bool H x W at the input image's size: ``map >
    #: pixel_threshold``; None without a pixel threshold.
    mask: Optional[np.ndarray]
    #: The anomaly map at the model's resolution (S x S), as ``mdps score`` draws it.
    model_map: np.ndarray = field(default=None)  # type: ignore[assignment]
    #: The reconstruction (the normal image the sampler found), uint8 S x S x 3.
    reconstruction: np.ndarray = field(default=None)  # type: ignore[assignment]

    def __repr__(self) -> str:
        h, w = self.map.shape
        return (
            f"ScoreResult(score={self.score!r}, anomalous={self.anomalous!r}, map={h}x{w} float32, "
            f"mask={'none' if self.mask is None else f'{int(self.mask.sum())} defect pixels'})"
        )


def _as_pixels(image: Any, index: int) -> np.ndarray:
    """An image as C-contiguous uint8 H x W or H x W x {1,3,4}.

    uint8 is taken as is; uint16 keeps its high byte (what ``mdps score`` does
    to a 16-bit PNG); float images are expected in [0, 1] and rounded to
    ``round(255 * x)``."""
    a = np.asarray(image)
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (1, 3, 4)):
        raise ValueError(f"image {index}: shape {a.shape} is not H x W or H x W x C with C in 1, 3, 4")
    if a.shape[0] == 0 or a.shape[1] == 0:
        raise ValueError(f"image {index}: shape {a.shape} is empty")
    if a.dtype == np.uint8:
        pass
    elif a.dtype == np.uint16:
        a = (a >> 8).astype(np.uint8)
    elif a.dtype.kind == "f":
        if not np.all(np.isfinite(a)):
            raise ValueError(f"image {index}: float pixels must be finite")
        lo, hi = float(a.min()), float(a.max())
        if lo < 0.0 or hi > 1.0:
            raise ValueError(
                f"image {index}: float pixels must be in [0, 1], got [{lo:g}, {hi:g}] "
                "(pass uint8 for 0..255 values)"
            )
        a = np.floor(a.astype(np.float64) * 255.0 + 0.5).astype(np.uint8)
    else:
        raise TypeError(f"image {index}: dtype {a.dtype} is not uint8, uint16 or float")
    return np.ascontiguousarray(a)


def _image_callback(progress: Optional[Callable[[ImageProgress], Any]]):
    if progress is None:
        return None
    return lambda done, total, seconds, pass_: progress(ImageProgress(done, total, seconds, pass_))


class Detector:
    """A loaded detector: the diffusion model and the feature extractor, once.

    Args:
        model: a U-Net model or training checkpoint (.safetensors), or a
            detector bundle (``mdps bundle`` / ``mdps calibrate``), whose
            features, settings and thresholds come with it.
        features: ResNet weights (.safetensors); None: the bundle's, else the
            anomaly map is the pixel term only.
        **settings: as ``mdps score``'s flags: the protocol (``t_start``,
            ``rho``, ``round1_t``, ``round1_rho``, ``lambda_``, ``samples``,
            ``skip``, ``ddim_eta``, ``variant``, ``guidance_norm``, ``eta``,
            ``blur_sigma``, ``blur_kernel``, ``layers``, ``image_score``,
            ``batch``, ``seed``), ``preset``, ``image_threshold``,
            ``pixel_threshold``, ``threads`` (0: all cores; process-wide),
            ``device`` (cpu, cuda, auto), ``precision``, ``features_prefix``.

    Raises:
        mdps.Error: a missing or malformed file, an unknown setting or a bad value.
    """

    def __init__(self, model: PathLike, features: Optional[PathLike] = None, **settings: Any) -> None:
        self._det = _core.Detector(os.fspath(model), os.fspath(features) if features else "", _pairs(settings))

    def score(self, image: np.ndarray) -> ScoreResult:
        """Scores one image: H x W x 3 (RGB), H x W x 4 (alpha ignored) or H x W
        (gray), uint8, uint16 or float in [0, 1], of any size (resized to the
        model's). Equals a batch of one."""
        return self.score_batch([image])[0]

    def score_batch(
        self, images: Sequence[np.ndarray], progress: Optional[Callable[[ImageProgress], Any]] = None
    ) -> List[ScoreResult]:
        """Scores several images in groups of the ``batch`` setting (with the
        authors' variant the guidance couples the images of a group, so a
        group's scores differ slightly from single calls). ``progress`` is
        called after every group with an :class:`ImageProgress`."""
        arrays = [_as_pixels(im, i) for i, im in enumerate(images)]
        if not arrays:
            raise ValueError("score_batch: no images given")
        out = self._det.score_batch(arrays, _image_callback(progress))
        return [ScoreResult(s, a, m, k, mm, rc) for (s, a, m, k, mm, rc) in out]

    @property
    def image_size(self) -> int:
        """The model's input size (images are square)."""
        return self._det.image_size

    @property
    def settings(self) -> Dict[str, Any]:
        """The settings in effect (after the bundle, preset and keywords)."""
        return json.loads(self._det.settings_json)

    @property
    def image_threshold(self) -> Optional[float]:
        """The image threshold in effect, None if none."""
        t = self._det.image_threshold
        return None if t != t else t

    @property
    def pixel_threshold(self) -> Optional[float]:
        """The pixel threshold in effect, None if none."""
        t = self._det.pixel_threshold
        return None if t != t else t

    def __repr__(self) -> str:
        return f"mdps.Detector(image_size={self.image_size}, image_threshold={self.image_threshold})"


def train(
    data: Optional[PathLike],
    out: PathLike,
    *,
    progress: Optional[Callable[[TrainProgress], Any]] = None,
    **options: Any,
) -> Dict[str, Any]:
    """Trains the diffusion prior on a folder of normal images (an MVTec/BTAD
    category root, whose train/good is used, or a plain folder), as ``mdps
    train``. Writes the checkpoint ``out`` (the model for the other calls) and
    its loss log (``out`` with extension .csv).

    Options as ``mdps train``'s flags: ``steps`` or ``epochs`` (one is
    required unless resuming), ``image_size``, ``base_channels``,
    ``channel_mult`` (list), ``res_blocks``, ``attention`` (list; [] for
    none), ``heads``, ``batch``, ``lr``, ``weight_decay``, ``adamw``, ``seed``,
    ``threads``, ``device``, ``precision``, ``checkpoint_every``, ``resume``,
    ``skip_bad``, ``log_csv``. ``progress`` is called after every step with a
    :class:`TrainProgress`; warnings (skipped images) go to :mod:`warnings`.

    Returns a dict: ``config`` (the U-Net's), ``first_step``, ``final_step``,
    ``images``, ``batch``, ``losses`` (one per step of this run),
    ``final_loss_avg``, ``seconds``, ``images_per_s``, ``out_path``,
    ``csv_path``, ``skipped``.
    """
    opts = dict(options)
    opts["out"] = os.fspath(out)
    if data is not None:
        opts["data"] = os.fspath(data)
    cb = None if progress is None else (lambda *a: progress(TrainProgress(*a)))
    r = _core.train(_pairs(opts), cb, lambda message: warnings.warn(message, RuntimeWarning, stacklevel=3))
    r["config"] = json.loads(r["config"])
    return r


def evaluate(
    model: PathLike,
    dataset: PathLike,
    out: Optional[PathLike] = None,
    *,
    features: Optional[PathLike] = None,
    panels: Optional[bool] = None,
    progress: Optional[Callable[[ImageProgress], Any]] = None,
    **settings: Any,
) -> Dict[str, Any]:
    """Evaluates on an MVTec AD / BTAD test set, as ``mdps eval`` (which runs
    in-process): the protocol, the metrics and the report files.

    Args:
        model: a U-Net model or checkpoint, or a detector bundle.
        dataset: a category root, or a folder of categories.
        out: the output folder (report.json, report.html, images.csv,
            maps.safetensors, panels/); None: a temporary one, removed afterwards.
        features: ResNet weights; None: the bundle's, else the pixel term only.
        panels: write the panel PNGs (default: when ``out`` is given).
        progress: called after every batch with an :class:`ImageProgress`.
        **settings: ``mdps eval``'s flags (``t_start``, ``lambda_``,
            ``limit``, ``crop``, ``mask_scope``, ``preset``, ``threads``,
            ``device``, ...); a ``True`` boolean is a bare flag.

    Returns:
        A category root: its report.json as a dict (``image_auroc``,
        ``pixel_auroc``, ``aupro``, ..., ``per_type``, ``settings``). A folder
        of categories: its summary.json as a dict, with ``reports`` mapping
        each category to its report.
    """
    model, dataset = os.fspath(model), os.fspath(dataset)
    with tempfile.TemporaryDirectory(prefix="mdps-eval-") as tmp:
        out_dir = os.fspath(out) if out is not None else tmp
        want_panels = (out is not None) if panels is None else panels
        args = ["eval", "--model", model, "--dataset", dataset, "--out", out_dir, "--quiet"]
        if features is not None:
            args += ["--features", os.fspath(features)]
        if not want_panels:
            args.append("--no-panels")
        args += _flags(settings)
        _core.run(args, _image_callback(progress))
        if _core.is_category_root(dataset):
            with open(os.path.join(out_dir, "report.json"), encoding="utf-8") as f:
                return json.load(f)
        with open(os.path.join(out_dir, "summary.json"), encoding="utf-8") as f:
            summary = json.load(f)
        summary["reports"] = {}
        for c in summary["categories"]:
            with open(os.path.join(out_dir, c["category"], "report.json"), encoding="utf-8") as f:
                summary["reports"][c["category"]] = json.load(f)
        return summary


def demo_dataset(
    root: PathLike, *, size: int = 32, train: int = 48, test_good: int = 10, test_defect: int = 5, seed: int = 1
) -> str:
    """Writes the toy data set of ``mdps demo`` (striped texture, planted blob
    and scratch defects with masks) in MVTec AD layout under ``root``;
    returns ``root``."""
    root = os.fspath(root)
    _core.demo_dataset(root, size, train, test_good, test_defect, seed)
    return root


def load_image(path: PathLike) -> np.ndarray:
    """An image file (PNG, JPEG, BMP) as uint8 H x W x 3 RGB: the pixels
    ``mdps score`` reads from that file."""
    return _core.load_image(os.fspath(path))


def cli(*args: str, progress: Optional[Callable[[ImageProgress], Any]] = None) -> str:
    """Runs an ``mdps`` command in-process, e.g. ``mdps.cli("score", "--model",
    m, "--images", d, "--out", o)``. Raises :class:`mdps.Error` for a bad
    argument or a failure; returns the help text for ``--help``, else "".
    ``progress`` replaces the command's progress line."""
    return _core.run([os.fspath(a) for a in args], _image_callback(progress))
