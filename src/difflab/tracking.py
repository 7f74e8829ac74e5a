"""Experiment records: always local (the run folder), mirrored to Comet or TensorBoard on request.

A tracker receives a run's parameters, metrics, images with their parameters, and grids. `local` writes nothing
more than the run folder already holds (resolved config, manifest or metrics JSONL, images, run.json): it is the
record that is always there. `comet` and `tensorboard` mirror it. A mirror that fails (package missing, network
gone) warns once, in one line, and the run goes on with its local records intact.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

from .errors import InputError

TRACKERS = ("local", "comet", "tensorboard")


def check(name: str) -> None:
    if name not in TRACKERS:
        raise InputError(f"tracker: {name!r} is not known; choose one of {', '.join(TRACKERS)}")


class Tracker:
    """`local`: the run folder is the record; every call here is a no-op. Mirrors override `_log_*`."""

    name = "local"

    def __init__(self, run_dir=None):
        self.run_dir = Path(run_dir) if run_dir else None
        self.failed = False

    # The public calls never raise: a mirror that fails is switched off with one warning.
    def log_params(self, params: dict) -> None:
        self._guard(self._log_params, params)

    def log_metrics(self, metrics: dict, step: int | None = None) -> None:
        self._guard(self._log_metrics, {k: v for k, v in metrics.items() if isinstance(v, (int, float))}, step)

    def log_image(self, path, name: str | None = None, parameters: dict | None = None, step: int | None = None):
        """An image file, with its parameters as metadata (an image's record, or a grid's description)."""
        self._guard(self._log_image, Path(path), name or Path(path).stem, parameters or {}, step)

    def finish(self, status: str = "complete") -> None:
        self._guard(self._finish, status)

    def _guard(self, fn, *args) -> None:
        if self.failed:
            return
        try:
            fn(*args)
        except Exception as e:  # noqa: BLE001  (a mirror must never stop a run)
            self.failed = True
            warnings.warn(f"tracker {self.name}: stopped mirroring ({type(e).__name__}: "
                          f"{str(e).splitlines()[0] if str(e) else ''}); local records are complete", stacklevel=3)

    def _log_params(self, params): pass
    def _log_metrics(self, metrics, step): pass
    def _log_image(self, path, name, parameters, step): pass
    def _finish(self, status): pass


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flat(v, key + "."))
        else:
            out[key] = v if isinstance(v, (int, float, str, bool)) or v is None else str(v)
    return out


class CometTracker(Tracker):
    """Comet: an online experiment with an API key (from COMET_API_KEY or Comet's config file, read by comet_ml
    itself and never written by difflab); else, or with COMET_OFFLINE=1, an offline experiment whose archive is
    written inside the run folder, to upload later with `comet upload`."""

    name = "comet"

    def __init__(self, run_dir, project: str = "difflab"):
        super().__init__(run_dir)
        os.environ.setdefault("COMET_DISABLE_AUTO_LOGGING", "1")  # difflab logs what it means to, nothing more
        import comet_ml
        from comet_ml.config import get_api_key, get_config

        quiet = dict(log_code=False, log_graph=False, auto_param_logging=False, auto_metric_logging=False,
                     parse_args=False, auto_output_logging=False, log_env_details=False, log_git_metadata=False,
                     log_git_patch=False, display_summary_level=0)
        self.offline = os.environ.get("COMET_OFFLINE", "").lower() in ("1", "true", "yes") or \
            not get_api_key(None, get_config())
        if self.offline:
            self.folder = self.run_dir / "comet"
            self.folder.mkdir(parents=True, exist_ok=True)
            self.experiment = comet_ml.OfflineExperiment(project_name=project, offline_directory=str(self.folder),
                                                         **quiet)
        else:
            self.experiment = comet_ml.Experiment(project_name=project, **quiet)
        self.experiment.set_name(self.run_dir.name)

    def _log_params(self, params):
        self.experiment.log_parameters(_flat(params))

    def _log_metrics(self, metrics, step):
        self.experiment.log_metrics(metrics, step=step)

    def _log_image(self, path, name, parameters, step):
        self.experiment.log_image(str(path), name=name, step=step, metadata=_flat(parameters))

    def _finish(self, status):
        self.experiment.log_other("status", status)
        self.experiment.end()
        if self.offline:
            archives = sorted(self.folder.glob("*.zip"))
            where = archives[-1] if archives else self.folder
            print(f"difflab: Comet offline archive: {where} (upload it with `comet upload {where}`)")


class TensorBoardTracker(Tracker):
    """TensorBoard event files in <run>/tensorboard: scalars, and images (sample grids) at their step."""

    name = "tensorboard"

    def __init__(self, run_dir):
        super().__init__(run_dir)
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(self.run_dir / "tensorboard"))

    def _log_params(self, params):
        self.writer.add_text("config", "```\n" + json.dumps(params, indent=2, default=str) + "\n```")

    def _log_metrics(self, metrics, step):
        for key, value in metrics.items():
            self.writer.add_scalar(key, value, step)

    def _log_image(self, path, name, parameters, step):
        import numpy as np
        from PIL import Image

        with Image.open(path) as im:
            self.writer.add_image(name, np.asarray(im.convert("RGB")), step, dataformats="HWC")

    def _finish(self, status):
        self.writer.add_text("status", status)
        self.writer.close()


def make(name: str, run_dir) -> Tracker:
    """The tracker `name` for a run folder; a mirror that cannot start warns once and gives the local one."""
    check(name)
    if name == "local":
        return Tracker(run_dir)
    try:
        return CometTracker(run_dir) if name == "comet" else TensorBoardTracker(run_dir)
    except Exception as e:  # noqa: BLE001
        extra = {"comet": "difflab[comet]", "tensorboard": "difflab[tensorboard]"}[name]
        hint = f"pip install '{extra}'" if isinstance(e, ImportError) else f"{type(e).__name__}: {e}"
        warnings.warn(f"tracker {name}: not available ({hint}); recording locally only", stacklevel=2)
        return Tracker(run_dir)
