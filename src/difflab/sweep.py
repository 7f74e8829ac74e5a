"""Parameter sweeps: axes -> cells -> batched pipeline calls, resumable, sharded across processes.

A sweep varies up to three parameters (x, y, z) over a base request. Its plan is deterministic: cells in
(z, y, x) order; cells that differ only in seed share batches of at most `max_batch` images, one CPU generator
per image. Because the batches are fixed by the config, a resumed or multi-process run calls the pipeline with
exactly the batches of an uninterrupted single-process run, and so writes the very same pixels.

The run folder holds sweep.yaml (the resolved config: concrete seeds, expanded ranges), images/,
manifest.jsonl (one line per finished or failed image), a labelled grid per z value, and index.html.
"""

from __future__ import annotations

import dataclasses
import json
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from . import config as configs
from . import runs, samples, threads, tracking
from .errors import InputError
from .params import SCHEDULERS, GenerationParams
from .pipelines import DEFAULT_MODEL
from .seeding import resolve_seed

# The parameters an axis may vary: name -> (grid label, value type, tasks that take it).
ALL_TASKS = ("text2img", "img2img", "inpaint")
AXIS_PARAMS = {
    "num_inference_steps": ("Steps", int, ALL_TASKS),
    "guidance_scale": ("CFG scale", float, ALL_TASKS),
    "strength": ("Denoising strength", float, ("img2img", "inpaint")),
    "seed": ("Seed", int, ALL_TASKS),
    "prompt": ("Prompt", str, ALL_TASKS),
    "negative_prompt": ("Negative prompt", str, ALL_TASKS),
    "prompt_sr": ("Prompt S/R", str, ALL_TASKS),
    "scheduler": ("Sampler", str, ALL_TASKS),
    "height": ("Height", int, ALL_TASKS),
    "width": ("Width", int, ALL_TASKS),
    "size": ("Size", str, ALL_TASKS),
    "eta": ("Eta", float, ALL_TASKS),
    "lora_scale": ("LoRA scale", float, ALL_TASKS),
    "controlnet_conditioning_scale": ("Control weight", float, ALL_TASKS),
    "control_guidance_start": ("Control start", float, ALL_TASKS),
    "control_guidance_end": ("Control end", float, ALL_TASKS),
    "control_image": ("Control image", str, ALL_TASKS),    # a path: the first ControlNet's control image
    "mask_threshold": ("Mask threshold", float, ("inpaint",)),
    "mask_refine": ("Mask refine", str, ("inpaint",)),
    "mask_reference": ("Mask reference", str, ("inpaint",)),
}
AXES = ("x", "y", "z")


@dataclass
class Axis:
    param: str
    values: list | dict  # a list, or a range {start, stop, step} or {start, stop, num} (stop included)


@dataclass
class SweepConfig:
    name: str = "sweep"
    task: str = "text2img"
    model: str = DEFAULT_MODEL
    params: dict = field(default_factory=dict)  # the base request: GenerationParams fields
    x: Axis | None = None
    y: Axis | None = None
    z: Axis | None = None
    images_per_cell: int = 1         # seeds seed, seed+1, ... within each cell
    max_batch: int | str = 8         # images per pipeline call; "auto": the largest that fits (probed once, remembered)
    grid_max_pixels: int = 16_000_000
    image: str | None = None         # img2img/inpaint input: a path, or sample:NAME[:SIZE] (a shipped photo)
    mask_image: str | None = None
    device: str = "auto"
    dtype: str = "auto"
    lora: list[str] = field(default_factory=list)
    textual_inversion: list[str] = field(default_factory=list)
    controlnet: list[str] = field(default_factory=list)     # ControlNets (difflab.control), each with its image:
    control_image: list[str] = field(default_factory=list)  # paths, or sample:NAME[:SIZE]
    tracker: str = "local"           # local | comet | tensorboard (local records are always written)
    channels_last: bool = False      # fast paths (see difflab.load); recorded in every image's metadata
    fuse_qkv: bool = False
    compile: bool = False            # compiled once per sweep (and cached on disk by inductor)
    cpu_threads: int | None = None   # on the CPU the thread count changes pixels: recorded when the run starts


# --- resolving a config: ranges expanded, seeds concrete, every cell validated before anything runs

def expand_values(axis: Axis, key: str) -> list:
    kind = AXIS_PARAMS[axis.param][1]
    values = axis.values
    if isinstance(values, dict):
        extra = sorted(set(values) - {"start", "stop", "step", "num"})
        if extra or "start" not in values or "stop" not in values or ("step" in values) == ("num" in values):
            raise InputError(f"{key}.values: {values!r} is not allowed; use a list, {{start, stop, step}} or "
                             f"{{start, stop, num}}")
        start, stop = values["start"], values["stop"]
        if kind is str or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (start, stop)):
            raise InputError(f"{key}.values: a range needs numbers and a numeric parameter, not {axis.param}")
        if "step" in values:
            step = values["step"]
            if not isinstance(step, (int, float)) or step == 0 or (stop - start) / step < 0:
                raise InputError(f"{key}.values.step: {step!r} is not allowed; use a non-zero step towards stop")
            count = int((stop - start) / step + 1e-9) + 1
            values = [start + i * step for i in range(count)]
        else:
            num = values["num"]
            if not isinstance(num, int) or num < 1:
                raise InputError(f"{key}.values.num: {num!r} is not allowed; use an integer >= 1")
            values = [start + (stop - start) * i / (num - 1) for i in range(num)] if num > 1 else [start]
        values = [round(v) if kind is int else round(float(v), 6) for v in values]
    if not isinstance(values, list) or not values:
        raise InputError(f"{key}.values: empty; give at least one value")
    checked = []
    for i, v in enumerate(values):
        if kind is float and isinstance(v, int) and not isinstance(v, bool):
            v = float(v)
        if axis.param == "scheduler":
            if v not in SCHEDULERS:
                raise InputError(f"{key}.values[{i}]: {v!r} is not a scheduler; choose one of {', '.join(SCHEDULERS)}")
        elif kind is int and axis.param == "seed" and v == -1:
            v = resolve_seed(-1)
        elif not isinstance(v, kind) or isinstance(v, bool):
            raise InputError(f"{key}.values[{i}]: {v!r} is not allowed for {axis.param}; use a {kind.__name__}")
        checked.append(v)
    return checked


def _apply(params: dict, axis: str, value, sr_search: str | None) -> None:
    """Set one axis value on a request (as a dict of GenerationParams fields)."""
    if axis == "prompt_sr":
        search = sr_search
        params["prompt"] = params["prompt"].replace(search, value)
        params["negative_prompt"] = params.get("negative_prompt", "").replace(search, value)
    elif axis == "size":
        width, _, height = str(value).partition("x")
        if not (width.isdigit() and height.isdigit()):
            raise InputError(f"size: {value!r} is not allowed; use WIDTHxHEIGHT, e.g. 512x768")
        params["width"], params["height"] = int(width), int(height)
    else:
        params[axis] = value


@dataclass
class Cell:
    index: tuple[int, int, int]        # (ix, iy, iz)
    params: GenerationParams           # seed = the cell's first seed, num_images = images_per_cell
    labels: dict                       # axis -> "CFG scale: 7.5"
    control_image: list = field(default_factory=list)   # one per ControlNet

    @property
    def seeds(self) -> list[int]:
        return [self.params.seed + j for j in range(self.params.num_images)]

    def key(self, seed: int) -> str:
        ix, iy, iz = self.index
        return f"x{ix}-y{iy}-z{iz}-s{seed}"


def label(param: str, value) -> str:
    if param == "scheduler":
        value = SCHEDULERS[value][2]
    if param == "prompt_sr":
        return str(value)
    if param == "control_image":
        value = Path(str(value)).name
    return f"{AXIS_PARAMS[param][0]}: {value}"


def resolve(data: dict) -> dict:
    """Check a sweep config and return it resolved (ranges listed, seeds concrete, sample photos as files):
    what sweep.yaml holds."""
    cfg = configs.from_dict(SweepConfig, data)
    resolved = configs.to_dict(cfg)
    if "task" in cfg.params:
        raise InputError("params.task: set the task at the top level (task: ...), not in params")
    base = GenerationParams.from_dict({**cfg.params, "task": cfg.task})
    base.seed = resolve_seed(base.seed)
    resolved["params"] = {**cfg.params, "seed": base.seed}
    if not isinstance(cfg.images_per_cell, int) or cfg.images_per_cell < 1:
        raise InputError(f"images_per_cell: {cfg.images_per_cell!r} is not allowed; use an integer >= 1")
    if cfg.max_batch != "auto" and not (isinstance(cfg.max_batch, int) and cfg.max_batch >= 1):
        raise InputError(f"max_batch: {cfg.max_batch!r} is not allowed; use an integer >= 1 or auto")
    tracking.check(cfg.tracker)
    threads.check(cfg.cpu_threads)
    if cfg.grid_max_pixels < 10_000:
        raise InputError(f"grid_max_pixels: {cfg.grid_max_pixels!r} is too small; use at least 10000")
    seen = set()
    for name in AXES:
        axis = getattr(cfg, name)
        if axis is None:
            continue
        if axis.param not in AXIS_PARAMS:
            raise InputError(f"{name}.param: {axis.param!r} is not a sweepable parameter; choose one of "
                             f"{', '.join(AXIS_PARAMS)}")
        if cfg.task not in AXIS_PARAMS[axis.param][2]:
            raise InputError(f"{name}.param: {axis.param} is not a parameter of {cfg.task}")
        if axis.param in seen:
            raise InputError(f"{name}.param: {axis.param} is already swept by another axis")
        seen.add(axis.param)
        values = expand_values(axis, name)
        if axis.param == "prompt_sr" and values[0] not in base.prompt + "\n" + base.negative_prompt:
            raise InputError(f"{name}.values[0]: {values[0]!r} (the Prompt S/R search text) is not in the prompt "
                             f"or negative prompt")
        resolved[name] = {"param": axis.param, "values": values}
    if len(cfg.control_image) != len(cfg.controlnet):
        raise InputError(f"control_image: {len(cfg.control_image)} control image(s) for {len(cfg.controlnet)} "
                         f"ControlNet(s); give one per ControlNet, in order")
    if any(resolved.get(a, {}) and resolved[a]["param"] == "control_image" for a in AXES) and not cfg.controlnet:
        raise InputError("control_image: an axis sweeps control images, but no controlnet is given")
    plan(resolved)  # every cell is a valid request
    for key in ("image", "mask_image"):
        resolved[key] = samples.input_path(resolved[key])
    resolved["control_image"] = [samples.input_path(p) for p in resolved["control_image"]]
    for name in AXES:
        if resolved.get(name) and resolved[name]["param"] == "control_image":
            resolved[name]["values"] = [samples.input_path(p) for p in resolved[name]["values"]]
    return resolved


def plan(resolved: dict) -> list[Cell]:
    """The cells of a resolved sweep, in (z, y, x) order, each a validated request."""
    base = {**resolved["params"], "task": resolved["task"], "num_images": resolved["images_per_cell"]}
    axes = [(name, resolved[name]) for name in AXES if resolved.get(name)]
    sr = next((a["values"][0] for _, a in axes if a["param"] == "prompt_sr"), None)
    ranges = {name: range(len(a["values"])) for name, a in axes}
    cells = []
    for iz in ranges.get("z", [0]):
        for iy in ranges.get("y", [0]):
            for ix in ranges.get("x", [0]):
                where = {"x": ix, "y": iy, "z": iz}
                values = dict(base)
                labels = {}
                control = list(resolved.get("control_image") or [])
                for name, axis in axes:
                    value = axis["values"][where[name]]
                    if axis["param"] == "control_image":
                        control[:1] = [value]
                    else:
                        _apply(values, axis["param"], value, sr)
                    labels[name] = label(axis["param"], value)
                try:
                    params = GenerationParams.from_dict(values).validate()
                except InputError as e:
                    raise InputError(f"cell {labels or 'base'}: {e}") from None
                cells.append(Cell((ix, iy, iz), params, labels, control))
    return cells


def batches(cells: list[Cell], max_batch: int) -> list[list[tuple[Cell, int]]]:
    """(cell, seed) jobs grouped by everything but the seed, in chunks of at most `max_batch`: the fixed plan
    of pipeline calls that every run of this sweep makes, however it is interrupted or sharded."""
    groups: dict[str, list] = {}
    for cell in cells:
        key = json.dumps({**cell.params.to_dict(), "seed": None, "num_images": None,
                          "control_image": cell.control_image}, sort_keys=True)
        groups.setdefault(key, []).extend((cell, seed) for seed in cell.seeds)
    return [jobs[i:i + max_batch] for jobs in groups.values() for i in range(0, len(jobs), max_batch)]


# --- running

class _StopAfterBatch:
    """Ctrl-C once: finish the current batch, then stop. Twice: stop at once."""

    def __init__(self):
        self.requested = False

    def __enter__(self):
        self._old = signal.signal(signal.SIGINT, self._handle) if _main_thread() else None
        return self

    def _handle(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        print("\ndifflab: stopping after this batch (Ctrl-C again to stop now)", file=sys.stderr)

    def __exit__(self, *exc):
        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)


def _main_thread() -> bool:
    import threading
    return threading.current_thread() is threading.main_thread()


def prepare_run(resolved: dict, out=runs.DEFAULT_ROOT) -> Path:
    """Create the run folder of a resolved sweep, with its sweep.yaml. `max_batch: auto` becomes the number the
    batch probe finds, and `cpu_threads` this machine's count (both written down, so that a resumed or sharded
    run makes exactly the same batches with the same kernels)."""
    if resolved["max_batch"] == "auto":
        from .batching import probed_batch
        resolved = {**resolved, "max_batch": probed_batch(resolved)}
    resolved = {**resolved, "cpu_threads": resolved.get("cpu_threads") or threads.default_count()}
    run_dir = runs.new_run_dir(resolved["name"], out)
    (run_dir / "images").mkdir()
    runs.atomic_write(run_dir / "sweep.yaml", yaml.safe_dump(resolved, sort_keys=False, allow_unicode=True))
    return run_dir


def load_resolved(run_dir) -> dict:
    path = Path(run_dir) / "sweep.yaml"
    if not path.is_file():
        raise InputError(f"resume: {str(run_dir)!r} is not a sweep run folder (no sweep.yaml)")
    return configs.load_yaml(path)


def check_inputs(resolved: dict) -> None:
    """Open and size-check the input image and mask once, before any model is loaded."""
    from .inputs import prepare
    if resolved["task"] != "text2img":
        cell = plan(resolved)[0]
        prepare(cell.params, resolved["image"], resolved["mask_image"])
    from .inputs import open_image
    for cell in plan(resolved):
        for i, path in enumerate(cell.control_image):
            open_image(path, f"control_image {i}")


def execute(run_dir, progress: bool = True, model=None, stop_event=None) -> "SweepRun":
    """Generate what is missing in `run_dir`, as one of N processes when launched with accelerate.

    model: an already loaded Model to use when it is the sweep's model (the web UI's); stop_event: a threading.Event
    that ends the sweep after the current batch, like Ctrl-C (resumable)."""
    state = process_state()
    run_dir, resolved, done = _open(run_dir, state)
    tracker = tracking.make(resolved.get("tracker", "local"), run_dir) if state.is_main_process else \
        tracking.Tracker(run_dir)
    tracker.log_params(resolved)

    # this process's share of the fixed plan: every N-th batch, less what is already on disk
    mine = [b for i, b in enumerate(batches(plan(resolved), resolved["max_batch"]))
            if i % state.num_processes == state.process_index]
    todo = [b for b in mine if any(cell.key(seed) not in done for cell, seed in b)]
    if todo:
        model = _model_for(resolved, model, state)
        with threads.recorded(resolved.get("cpu_threads"), run_dir / "sweep.yaml", model.device):
            finished = _generate(model, todo, mine, run_dir, resolved, done, tracker, state, progress, stop_event)
        if not finished:
            tracker.finish("interrupted")
            print(f"difflab: interrupted; resume with: difflab sweep --resume {run_dir}", file=sys.stderr)
            raise KeyboardInterrupt
    state.wait_for_everyone()

    # rank 0 assembles the grids and the page from what every process wrote
    run = SweepRun(run_dir)
    if state.is_main_process:
        finish(run_dir)
        for z, path in enumerate(run.grid_paths()):
            tracker.log_image(path, f"grid-{z}", {"grid": path.name, "fixed": run.fixed_parameters()})
        tracker.log_metrics({"images": len(run.images), "failed": len(run.failed)})
    tracker.finish("failed" if run.failed else "complete")
    state.wait_for_everyone()
    return run


def process_state():
    """accelerate's view of this process: rank, world size, device (CPU workers: see threads.cpu_workers)."""
    from accelerate import PartialState

    return PartialState(cpu=threads.cpu_workers())


def _open(run_dir, state) -> tuple[Path, dict, set[str]]:
    """Every rank works in the folder rank 0 was given; rank 0 compacts the manifest (dropping failures, which
    are retried); returns (folder, resolved config, keys of the finished images)."""
    from accelerate.utils import broadcast_object_list

    run_dir = Path(run_dir)
    if state.num_processes > 1:
        run_dir = Path(broadcast_object_list([str(run_dir)])[0])
    resolved = load_resolved(run_dir)
    check_inputs(resolved)
    if state.is_main_process:
        runs.compact_manifest(run_dir)
    state.wait_for_everyone()
    return run_dir, resolved, {e["key"] for e in runs.read_manifest(run_dir) if e.get("status") == "ok"}


def _model_for(resolved: dict, model, state):
    """The given model when it is the sweep's own (and plain), else the sweep's model loaded once."""
    from .pipelines import load

    if model is not None and model.source.name == resolved["model"] and not resolved["lora"] \
            and not resolved["textual_inversion"] and not resolved.get("controlnet") and not model.controlnets:
        return model
    device = resolved["device"]
    if state.num_processes > 1 and device == "auto":  # one GPU per process, or the CPU
        device = "cpu" if state.device.type == "cpu" else str(state.device)
    return load(resolved["model"], resolved["task"], device=device, dtype=resolved["dtype"], lora=resolved["lora"],
                textual_inversion=resolved["textual_inversion"], controlnet=resolved.get("controlnet"), progress=False,
                **{k: resolved.get(k, False) for k in ("channels_last", "fuse_qkv", "compile")})


def _generate(model, todo, mine, run_dir, resolved, done, tracker, state, progress, stop_event) -> bool:
    """Run the batches in `todo` with a progress bar; False when Ctrl-C or `stop_event` stopped it early."""
    from tqdm.auto import tqdm

    total = sum(len(b) for b in mine)
    rank = f" [rank {state.process_index}]" if state.num_processes > 1 else ""
    with tqdm(total=total, initial=total - sum(len(b) for b in todo), unit="img", disable=not progress,
              desc=f"sweep {resolved['name']}{rank}") as bar, _StopAfterBatch() as stop:
        for batch in todo:
            if stop.requested or (stop_event is not None and stop_event.is_set()):
                return False
            _run_batch(model, batch, run_dir, resolved, done, tracker, state.process_index)
            bar.update(len(batch))
    return not stop.requested


def _run_batch(model, batch, run_dir, resolved, done, tracker, rank: int = 0) -> None:
    """One pipeline call; each image saved and recorded in the manifest, or recorded as failed."""
    from .generate import generate

    cell = batch[0][0]
    seeds = [seed for _, seed in batch]
    start = time.perf_counter()
    try:
        results = generate(model, cell.params, image=resolved["image"], mask_image=resolved["mask_image"],
                           control_image=cell.control_image, seeds=seeds)
        error = None
    except Exception as e:  # noqa: BLE001  (a failed cell is recorded and the sweep goes on; OOM included)
        results, error = [None] * len(batch), f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
    seconds = round((time.perf_counter() - start) / len(batch), 4)
    for (cell, seed), result in zip(batch, results):
        key = cell.key(seed)
        if key in done:
            continue  # made before an interruption; this batch was rerun only for its bit-exact batch mates
        entry = {"key": key, "cell": list(cell.index), "seed": seed, "labels": cell.labels,
                 "file": f"images/{key}.png", "seconds": seconds, "status": "ok", "error": None, "rank": rank}
        if result is not None and max(hi for _, hi in result.image.getextrema()) == 0:
            error_here = "black image (NaN in the latents, or the safety checker)"
        else:
            error_here = error
        if error_here:
            entry.update(status="failed", error=error_here, file=None)
        else:
            result.save(run_dir / entry["file"])
            tracker.log_image(run_dir / entry["file"], key, result.record)
        runs.append_manifest(run_dir, entry)
        done.add(key)


def finish(run_dir) -> None:
    """Assemble the grids and the page from what is on disk (rank 0, after every process is done)."""
    from . import report
    run = SweepRun(run_dir)
    for z, path in enumerate(run.grid_paths()):
        runs.save_image(run.make_grid(z), path)
    runs.atomic_write(Path(run_dir) / "index.html", report.sweep_page(run))


def run_sweep(config, overrides=(), out=runs.DEFAULT_ROOT, progress: bool = True) -> "SweepRun":
    """Run a sweep from a YAML path or a dict (the same structure), in this process. Returns the run."""
    data = configs.load_yaml(config) if isinstance(config, (str, Path)) else dict(config)
    configs.apply_overrides(data, list(overrides))
    return execute(prepare_run(resolve(data), out), progress=progress)


def resume(run_dir, progress: bool = True) -> "SweepRun":
    return execute(run_dir, progress=progress)


# --- a finished (or partial) run, for Python and notebooks

class SweepRun:
    """A sweep's run folder: its config, cells, images with parameters, grids; shows its grid in Jupyter."""

    def __init__(self, run_dir):
        self.dir = Path(run_dir)
        self.config = load_resolved(self.dir)
        self.cells = plan(self.config)
        self.entries = {e["key"]: e for e in runs.read_manifest(self.dir)}

    def axis(self, name: str) -> dict | None:
        return self.config.get(name)

    @property
    def z_count(self) -> int:
        return len(self.config["z"]["values"]) if self.config.get("z") else 1

    def grid_paths(self) -> list[Path]:
        if self.z_count == 1:
            return [self.dir / "grid.png"]
        return [self.dir / f"grid-z{iz}.png" for iz in range(self.z_count)]

    def table(self) -> list[dict]:
        """One row per image: cell, axis labels, seed, status, file, seconds, error."""
        rows = []
        for cell in self.cells:
            for seed in cell.seeds:
                e = self.entries.get(cell.key(seed), {})
                rows.append({"cell": cell.index, **cell.labels, "seed": seed, "status": e.get("status", "missing"),
                             "file": e.get("file"), "seconds": e.get("seconds"), "error": e.get("error")})
        return rows

    @property
    def images(self) -> list[dict]:
        """The finished images: {'path', 'params' (the full record in the PNG), 'cell', 'seed'}."""
        from .metadata import read
        return [{"path": self.dir / r["file"], "params": read(self.dir / r["file"])["difflab"], "cell": r["cell"],
                 "seed": r["seed"]} for r in self.table() if r["status"] == "ok"]

    @property
    def failed(self) -> list[dict]:
        return [r for r in self.table() if r["status"] == "failed"]

    @property
    def complete(self) -> bool:
        return all(r["status"] == "ok" for r in self.table())

    def fixed_parameters(self) -> str:
        c = self.config
        p = self.cells[0].params
        swept = {c[a]["param"] for a in AXES if c.get(a)}
        parts = [f"{p.prompt}" if not swept & {"prompt", "prompt_sr"} else None,
                 f"Negative prompt: {p.negative_prompt}" if p.negative_prompt and not swept & {"negative_prompt", "prompt_sr"} else None,
                 f"Steps: {p.num_inference_steps}" if "num_inference_steps" not in swept else None,
                 f"Sampler: {self._sampler_label(p.scheduler)}" if "scheduler" not in swept else None,
                 f"CFG scale: {p.guidance_scale}" if "guidance_scale" not in swept else None,
                 f"Seed: {p.seed}" if "seed" not in swept else None,
                 f"Denoising strength: {p.resolved_strength}" if p.task != "text2img" and "strength" not in swept else None,
                 f"Model: {c['model']}"]
        return " | ".join(x for x in parts if x)

    def _sampler_label(self, name: str | None) -> str:
        if name:
            return SCHEDULERS[name][2]
        from .metadata import read  # the model's own scheduler: as recorded in the images
        done = [e for e in self.entries.values() if e.get("status") == "ok"]
        return read(self.dir / done[0]["file"])["difflab"]["sampler"] if done else "the model's default"

    def make_grid(self, z: int = 0):
        """The labelled grid of z value `z`, drawn from the images on disk (placeholders where failed)."""
        from PIL import Image

        from . import grids
        xs = len(self.config["x"]["values"]) if self.config.get("x") else 1
        ys = len(self.config["y"]["values"]) if self.config.get("y") else 1
        rows = []
        for iy in range(ys):
            row = []
            for ix in range(xs):
                cell = next(c for c in self.cells if c.index == (ix, iy, z))
                items = []
                for seed in cell.seeds:
                    e = self.entries.get(cell.key(seed))
                    if e and e["status"] == "ok":
                        with Image.open(self.dir / e["file"]) as im:
                            items.append(im.convert("RGB"))
                    else:
                        items.append(f"failed: {e['error']}" if e else "missing")
                row.append(items)
            rows.append(row)
        col_labels = [next(c for c in self.cells if c.index == (ix, 0, z)).labels.get("x", "") for ix in range(xs)]
        row_labels = [next(c for c in self.cells if c.index == (0, iy, z)).labels.get("y", "") for iy in range(ys)]
        title = self.fixed_parameters()
        if self.config.get("z"):
            title = next(c for c in self.cells if c.index == (0, 0, z)).labels["z"] + " | " + title
        return grids.labelled_grid(rows, col_labels, row_labels, title, self.config["grid_max_pixels"])

    def grid(self, z: int = 0):
        from PIL import Image
        path = self.grid_paths()[z]
        return Image.open(path) if path.exists() else self.make_grid(z)

    def _repr_png_(self):
        return self.grid(0)._repr_png_()

    def __repr__(self):
        t = self.table()
        return (f"SweepRun({str(self.dir)!r}: {sum(r['status'] == 'ok' for r in t)}/{len(t)} images, "
                f"{len(self.failed)} failed)")


def estimate_seconds(resolved: dict, seconds_per_step: float) -> float:
    """Time for the whole sweep from one calibrated image-step at the base size (batching makes it less)."""
    cells = plan(resolved)
    base = cells[0].params
    area0 = (base.width or 1) * (base.height or 1)
    total = 0.0
    for cell in cells:
        p = cell.params
        area = (p.width or 1) * (p.height or 1)
        total += p.denoising_steps * p.num_images * seconds_per_step * (area / area0)
    return total


def dry_run(resolved: dict) -> str:
    """The cells, the image count and a time estimate calibrated by one 2-step image on this machine."""
    from .generate import generate
    from .pipelines import load

    cells = plan(resolved)
    lines = [f"sweep {resolved['name']}: task {resolved['task']}, model {resolved['model']}"]
    for name in AXES:
        if resolved.get(name):
            lines.append(f"  {name}: {resolved[name]['param']} = {resolved[name]['values']}")
    for cell in cells:
        lines.append(f"  cell {cell.index}: {', '.join(cell.labels.values()) or 'base'}  seeds {cell.seeds}")
    n_images = sum(len(c.seeds) for c in cells)
    max_batch = resolved["max_batch"]
    if max_batch == "auto":
        from .batching import probed_batch
        max_batch = probed_batch(resolved)
    n_calls = len(batches(cells, max_batch))
    model = load(resolved["model"], resolved["task"], device=resolved["device"], dtype=resolved["dtype"],
                 lora=resolved["lora"], textual_inversion=resolved["textual_inversion"],
                 controlnet=resolved.get("controlnet"), progress=False)
    probe = dataclasses.replace(cells[0].params, num_inference_steps=2, strength=None if cells[0].params.task ==
                                "text2img" else 1.0, num_images=1)
    inputs = dict(image=resolved["image"], mask_image=resolved["mask_image"], control_image=cells[0].control_image)
    generate(model, probe, **inputs)  # warm-up
    start = time.perf_counter()
    generate(model, probe, **inputs)
    per_step = (time.perf_counter() - start) / 2
    lines.append(f"{len(cells)} cells, {n_images} images in {n_calls} pipeline calls of up to {max_batch}; about "
                 f"{estimate_seconds(resolved, per_step):.0f} s on {model.device} "
                 f"(calibrated: {per_step:.3f} s per image-step, before batching gains)")
    return "\n".join(lines)

