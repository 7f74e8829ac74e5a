"""The web UI: `difflab app`. Gradio Blocks over the very calls the CLI makes, one generation at a time.

Tabs: text to image, image to image, inpaint (draw the mask, give boxes, or name what to repaint: masks from words),
sweep, gallery; with `--controlnet`, each generation tab takes a control image (its preprocessed preview shown) and the
ControlNet's weight and guidance window. Every request is
validated by `GenerationParams` (bad input is a message in the page, never a traceback), runs on a worker thread
that holds the device lock, streams a preview every step, and stops within one step on Cancel. Images are written
to results/ with the CLI's metadata. The server binds 127.0.0.1 and serves files from results/ and its own
assets only.
"""

import queue
import threading
import time
from pathlib import Path

import gradio as gr
import yaml

from . import masks, metadata, runs
from .control import MASK_REFINEMENTS
from .errors import InputError
from .params import SCHEDULERS, GenerationParams
from .sweep import AXIS_PARAMS

TEXT2IMG_AXES = [name for name, (_, _, tasks) in AXIS_PARAMS.items() if "text2img" in tasks]
PREVIEW_EVERY = 1  # steps between live previews (a cheap latent -> RGB map: no VAE decode)


# --- turning form values into validated requests

def prompts_of(text: str) -> list[str]:
    """Several prompts, one per line, run as a batch; blank lines are skipped."""
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    return lines or [""]


def parse_boxes(text: str) -> list[tuple[float, ...]]:
    """Boxes, one per line: x0,y0,x1,y1 in pixels or as fractions of the size."""
    return [masks.parse_box(line.strip(), "boxes") for line in (text or "").splitlines() if line.strip()]


def drawn_mask(editor) -> tuple[object, object]:
    """(image, mask) from the ImageEditor's value: the background, and white wherever a layer was painted."""
    from PIL import Image

    if not editor or editor.get("background") is None:
        return None, None
    image = editor["background"].convert("RGB")
    mask = Image.new("L", image.size, 0)
    for layer in editor.get("layers") or []:
        if layer is not None:
            alpha = layer.convert("RGBA").getchannel("A").resize(image.size)
            mask.paste(255, (0, 0), alpha.point(lambda v: 255 if v > 0 else 0))
    return image, (mask if mask.getbbox() else None)


def request(task: str, prompt: str, negative_prompt: str, steps, guidance, width, height, seed, num_images,
            scheduler, strength=None, boxes: str = "", mask_blur=0.0, keep_unmasked=False, mask_from: str = "",
            mask_threshold=3.0, mask_refine="segments", **control) -> GenerationParams:
    """One validated request from the form; raises InputError naming the field, as the CLI does. `control`: the
    ControlNet fields (control_preprocess, controlnet_conditioning_scale, control_guidance_start/end)."""
    fields = {"task": task, "prompt": prompt, "negative_prompt": negative_prompt or "",
              "num_inference_steps": _int(steps, "num_inference_steps"), "guidance_scale": guidance,
              "seed": _int(seed, "seed"), "num_images": _int(num_images, "num_images"),
              "scheduler": None if scheduler in (None, "", "default") else scheduler}
    if task == "text2img":
        fields.update(width=_int(width, "width") or None, height=_int(height, "height") or None)
    else:
        fields["strength"] = strength
    if task == "inpaint":
        fields.update(boxes=parse_boxes(boxes), mask_blur=mask_blur or 0.0, keep_unmasked=bool(keep_unmasked),
                      mask_from=(mask_from or "").strip(), mask_threshold=mask_threshold, mask_refine=mask_refine)
    return GenerationParams.from_dict({**fields, **control}).validate()


def _int(value, field: str):
    if value is None or value == "":
        return None
    if isinstance(value, float) and not value.is_integer():
        raise InputError(f"{field}: {value!r} is not allowed; use a whole number")
    return int(value)


# --- the worker: one generation at a time on the device

class Studio:
    """The loaded model, the device lock, and the cancel flag of the job under way."""

    def __init__(self, model: str, results, device: str = "auto", dtype: str = "auto", lora=(), controlnet=()):
        self.model_name, self.device, self.dtype, self.lora = model, device, dtype, list(lora)
        self.controlnet = list(controlnet)
        self.results = Path(results).resolve()
        self.results.mkdir(parents=True, exist_ok=True)
        self.lock = threading.Lock()
        self.cancel = threading.Event()
        self._model = None

    @property
    def model(self):
        if self._model is None:
            from .pipelines import load
            self._model = load(self.model_name, device=self.device, dtype=self.dtype, lora=self.lora,
                               controlnet=self.controlnet, progress=False)
        return self._model

    def stop_current(self) -> None:
        """The Cancel button: stop the job on the device at its next step."""
        self.cancel.set()

    def run(self, requests: list[GenerationParams], image, mask, events: queue.Queue,
            cancel: threading.Event, control=None) -> None:
        """Generate every request into one run folder (as the CLI does); report previews, results and errors on
        `events`. `cancel` is this job's own flag: set before the device is free, the job never starts."""
        from .generate import generate_run
        from .viz import latent_preview

        def on_step(pipe, i, t, kwargs):
            if cancel.is_set():
                pipe._interrupt = True  # diffusers skips the remaining steps
            elif (i + 1) % PREVIEW_EVERY == 0:
                events.put(("preview", (i + 1, pipe.num_timesteps, latent_preview(kwargs["latents"][0]))))
            return kwargs

        saved = []

        def on_saved(paths):
            saved.extend(paths)
            events.put(("images", list(saved)))

        with self.lock:
            self.cancel = cancel
            try:
                run = generate_run(self.model, requests, image=image, mask_image=mask, control_image=control,
                                   out=self.results,
                                   name=f"app-{requests[0].task}-{requests[0].prompt or 'image'}",
                                   command=["difflab", "app"], callback=on_step, cancel=cancel, on_saved=on_saved)
                events.put(("done", (run.status, run.dir, run.images)))
            except InputError as e:
                events.put(("error", str(e)))
            except Exception as e:  # noqa: BLE001  (shown in the page as one line; the server goes on)
                events.put(("error", f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"))


def _files(paths) -> list[str]:
    return [str(p) for p in paths]


def generation_stream(studio: Studio, requests, image, mask, progress, control=None):
    """Run on a worker thread and yield (preview, gallery, status, details) as it goes."""
    events: queue.Queue = queue.Queue()
    cancel = threading.Event()
    worker = threading.Thread(target=studio.run, args=(requests, image, mask, events, cancel, control), daemon=True)
    worker.start()
    n = len(requests)
    try:
        while True:
            kind, payload = events.get()
            if kind == "preview":
                step, total, image_now = payload
                progress((step, total), desc=f"step {step}/{total}")
                yield image_now, gr.skip(), f"Step {step}/{total} of {n} prompt(s)…", gr.skip()
            elif kind == "images":
                yield gr.skip(), _files(payload), f"{len(payload)} image(s) saved…", gr.skip()
            elif kind == "error":
                raise gr.Error(payload, print_exception=False)
            else:
                status, run_dir, saved = payload
                text = (f"Cancelled: {len(saved)} image(s) kept" if status == "interrupted"
                        else f"Done: {len(saved)} image(s) in `{run_dir}`")
                yield gr.skip(), _files(saved), text, {"status": status, "run": str(run_dir) if run_dir else None,
                                                      "files": _files(saved)}
                return
    finally:  # the page cancelled this event, or it ended: stop the worker at its next step
        if worker.is_alive():
            cancel.set()


# --- the page

SCHEDULER_CHOICES = ["default", *SCHEDULERS]


def params_column(task: str) -> dict:
    """The parameter widgets of one generation tab, by request field name, in the order of the tab's API."""
    w = {"prompt": gr.Textbox(label="Prompt (one per line: a batch)", lines=3, elem_id=f"{task}-prompt"),
         "negative_prompt": gr.Textbox(label="Negative prompt", lines=1)}
    with gr.Row():
        w["steps"] = gr.Slider(1, 150, value=30, step=1, label="Steps")
        w["guidance"] = gr.Slider(0, 30, value=7.5, step=0.5, label="Guidance scale")
    if task == "text2img":
        with gr.Row():
            w["width"] = gr.Slider(0, 2048, value=0, step=8, label="Width (0: the model's default)")
            w["height"] = gr.Slider(0, 2048, value=0, step=8, label="Height (0: the model's default)")
    with gr.Row():
        w["seed"] = gr.Number(value=-1, precision=0, label="Seed (-1: random)")
        dice = gr.Button("Random seed", scale=0)
        w["num_images"] = gr.Slider(1, 16, value=1, step=1, label="Images per prompt")
    w["scheduler"] = gr.Dropdown(SCHEDULER_CHOICES, value="default", label="Scheduler")
    if task != "text2img":
        w["strength"] = gr.Slider(0.01, 1.0, value=0.8 if task == "img2img" else 1.0, step=0.01,
                                  label="Strength (denoising)")
    dice.click(lambda: -1, None, w["seed"], queue=False, api_visibility="private")
    return w


def outputs_column(task: str) -> dict:
    o = {}
    with gr.Row():
        o["go"] = gr.Button("Generate", variant="primary", elem_id=f"{task}-generate")
        o["cancel"] = gr.Button("Cancel", variant="stop", elem_id=f"{task}-cancel")
    o["preview"] = gr.Image(label="Live preview", type="pil", height=256, interactive=False)
    o["gallery"] = gr.Gallery(label="Results (saved in results/)", columns=4, height="auto", elem_id=f"{task}-gallery")
    o["status"] = gr.Markdown(elem_id=f"{task}-status")
    o["details"] = gr.JSON(label="Files", visible=False)
    with gr.Row():
        o["to_img2img"] = gr.Button("Send selected to image to image")
        o["to_inpaint"] = gr.Button("Send selected to inpaint")
    return o


CONTROL_FIELDS = ("control_preprocess", "controlnet_conditioning_scale", "control_guidance_start",
                  "control_guidance_end", "resize_control")


def requests_from(task: str, v: dict) -> tuple[list[GenerationParams], object, object]:
    """(requests, input image, drawn mask) from a generation tab's values, by widget name."""
    control = {k: v[k] for k in CONTROL_FIELDS if k in v}
    reqs = [request(task, p, v["negative_prompt"], v["steps"], v["guidance"], v.get("width"), v.get("height"),
                    v["seed"], v["num_images"], v["scheduler"], v.get("strength"), v.get("boxes", ""),
                    v.get("mask_blur", 0.0), v.get("keep_unmasked", False), v.get("mask_from", ""),
                    v.get("mask_threshold", 3.0), v.get("mask_refine", "segments"), **control)
            for p in prompts_of(v["prompt"])]
    if "control_image" in v and v["control_image"] is None:
        raise InputError("control_image: give a control image for the ControlNet (upload one)")
    if task == "img2img":
        if v["image"] is None:
            raise InputError("image: give an input image (upload one, or send one from another tab)")
        return reqs, v["image"].convert("RGB"), None
    if task == "inpaint":
        image, mask = drawn_mask(v["editor"])
        if image is None:
            raise InputError("image: give an image to inpaint (upload one, or send one from another tab)")
        if mask is None and not reqs[0].boxes and not reqs[0].mask_from:
            raise InputError("mask_image: paint the area to repaint on the image, give boxes, or name it (mask "
                             "from words)")
        return reqs, image, mask
    return reqs, None, None


def control_widgets(task: str) -> dict:
    """The ControlNet's inputs (one control image for all loaded ControlNets' first), with the preprocessed image
    shown as it will be used."""
    from .control import PREPROCESSORS, SCALE_RANGE, preprocess

    w = {}
    with gr.Accordion("ControlNet", open=True):
        with gr.Row():
            w["control_image"] = gr.Image(label="Control image", type="pil", elem_id=f"{task}-control-image")
            preview = gr.Image(label="What the ControlNet sees", type="pil", interactive=False,
                               elem_id=f"{task}-control-preview")
        with gr.Row():
            w["control_preprocess"] = gr.Dropdown(list(PREPROCESSORS), value="none", label="Preprocessor")
            w["resize_control"] = gr.Checkbox(value=True, label="Resize the control image to the image's size")
        with gr.Row():
            w["controlnet_conditioning_scale"] = gr.Slider(*SCALE_RANGE, value=1.0, step=0.05, label="Weight")
            w["control_guidance_start"] = gr.Slider(0, 1, value=0.0, step=0.05, label="Start (fraction of steps)")
            w["control_guidance_end"] = gr.Slider(0, 1, value=1.0, step=0.05, label="End (fraction of steps)")

    def show(image, module):
        return None if image is None else preprocess(image, module)

    for trigger in (w["control_image"].change, w["control_preprocess"].change):
        trigger(show, [w["control_image"], w["control_preprocess"]], preview, queue=False, api_visibility="private")
    return w


def generation_tab(studio: Studio, task: str) -> dict:
    """A text-to-image, image-to-image or inpaint tab: its inputs, parameters and outputs, wired to the device
    queue (streaming, one job at a time) and to Cancel (within one step). Returns its widgets by name."""
    with gr.Row():
        with gr.Column():
            extra = {}
            if task == "img2img":
                extra["image"] = gr.Image(label="Input image", type="pil", elem_id="img2img-image")
            if task == "inpaint":
                extra["editor"] = gr.ImageEditor(label="Image: paint the area to repaint", type="pil",
                                                 brush=gr.Brush(colors=["#ff0000"], color_mode="fixed"),
                                                 layers=False, elem_id="inpaint-editor")
                extra["boxes"] = gr.Textbox(label="Boxes, one per line: x0,y0,x1,y1 (pixels or fractions)", lines=2)
                with gr.Row():
                    extra["mask_blur"] = gr.Slider(0, 32, value=4, step=1, label="Mask blur")
                    extra["keep_unmasked"] = gr.Checkbox(value=True, label="Keep unmasked pixels exactly")
                with gr.Row():
                    extra["mask_from"] = gr.Textbox(value="", lines=1, label="Mask from words: repaint where the model "
                                                                             "sees them (DiffEdit), e.g. red circle")
                    extra["mask_threshold"] = gr.Slider(0.5, 8, value=3.0, step=0.1,
                                                        label="Mask threshold (lower: larger mask)")
                    extra["mask_refine"] = gr.Radio(list(MASK_REFINEMENTS), value="segments",
                                                    label="Mask refine: snap to the image's regions, take the "
                                                          "regions the words single out most, or none")
            if studio.controlnet:
                extra.update(control_widgets(task))
            fields = {**params_column(task), **extra}  # the API takes them in this order
        with gr.Column():
            out = outputs_column(task)

    def start(*values, progress=gr.Progress()):
        try:
            requests, image, mask = requests_from(task, dict(zip(fields, values)))
        except InputError as e:
            raise gr.Error(str(e), print_exception=False)
        control = dict(zip(fields, values)).get("control_image")   # one image drives every loaded ControlNet
        yield from generation_stream(studio, requests, image, mask, progress,
                                     None if control is None else [control] * len(studio.controlnet))

    event = out["go"].click(start, list(fields.values()), [out["preview"], out["gallery"], out["status"],
                                                           out["details"]],
                            api_name=task, concurrency_limit=1, concurrency_id="device")
    out["cancel"].click(studio.stop_current, None, None, cancels=[event], queue=False, api_name=f"cancel_{task}")
    return {**fields, **out}


def connect_tabs(tabs, selected, t2i: dict, i2i: dict, inp: dict, gallery: dict) -> None:
    """Moving images between tabs, and reusing a gallery image's parameters in the text-to-image tab."""
    def send(path, tab: str):
        if not path:
            raise gr.Error("Select an image in the results first", print_exception=False)
        value = path if tab == "img2img" else {"background": path, "layers": [], "composite": path}
        return value, gr.Tabs(selected=tab)

    for source in (t2i, i2i, inp, gallery):
        source["gallery"].select(remember, None, selected, queue=False, api_visibility="private")
        source["to_img2img"].click(lambda path: send(path, "img2img"), selected, [i2i["image"], tabs], queue=False,
                                   api_visibility="private")
        source["to_inpaint"].click(lambda path: send(path, "inpaint"), selected, [inp["editor"], tabs], queue=False,
                                   api_visibility="private")

    def reuse(path):
        try:
            return (*reused_fields(path), gr.Tabs(selected="text2img"))
        except InputError as e:
            raise gr.Error(str(e), print_exception=False)

    form = [t2i[k] for k in ("prompt", "negative_prompt", "steps", "guidance", "width", "height", "seed", "num_images",
                             "scheduler")]
    gallery["reuse"].click(reuse, selected, [*form, tabs], api_name="reuse")
    gallery["gallery"].select(describe, None, gallery["info"], queue=False, api_visibility="private")


def build(studio: Studio):
    """The page: one builder per tab, then the links between tabs."""
    with gr.Blocks(title="difflab") as page:
        gr.Markdown(f"## difflab · `{studio.model_name}` · results in `{studio.results}`")
        selected = gr.State(None)
        with gr.Tabs() as tabs:
            with gr.Tab("Text to image", id="text2img"):
                t2i = generation_tab(studio, "text2img")
            with gr.Tab("Image to image", id="img2img"):
                i2i = generation_tab(studio, "img2img")
            with gr.Tab("Inpaint", id="inpaint"):
                inp = generation_tab(studio, "inpaint")
            with gr.Tab("Sweep", id="sweep"):
                sweep_tab(studio)
            with gr.Tab("Gallery", id="gallery"):
                gallery = gallery_tab(studio)
        connect_tabs(tabs, selected, t2i, i2i, inp, gallery)
    return page


def reused_fields(path) -> tuple:
    """The text-to-image form's values (prompt, negative, steps, guidance, width, height, seed, images,
    scheduler) from an image's stored parameters."""
    if not path:
        raise InputError("image: select an image in the gallery first")
    record = metadata.read(path)["difflab"]
    if not record:
        raise InputError(f"image: {Path(path).name} carries no difflab parameters")
    return (record["prompt"], record["negative_prompt"], record["num_inference_steps"], record["guidance_scale"],
            record.get("width") or 0, record.get("height") or 0, record["seed"], 1,
            record.get("scheduler") or "default")


def remember(event: gr.SelectData):
    """The file of the image selected in a gallery."""
    return event.value["image"]["path"] if isinstance(event.value, dict) else event.value


def describe(event: gr.SelectData) -> str:
    return _describe(remember(event))


def _describe(path) -> str:
    meta = metadata.read(path)
    loras = ((meta["difflab"] or {}).get("model") or {}).get("lora") or []
    used = "".join(f"\n\nLoRA **{x.get('name', Path(x['path']).stem)}** x {x.get('weight', 1.0):g}"
                   + (f" ({x['method']} of {x['base']['name']})" if x.get("method") else "") + f": `{x['path']}`"
                   for x in loras)
    return f"**{Path(path).name}**{used}\n\n```\n{meta['parameters'] or 'no parameters stored'}\n```"


def sweep_tab(studio: Studio) -> None:
    """Pick x and y axes and their values over one text-to-image request; see the labelled grid."""
    from . import sweep

    with gr.Row():
        with gr.Column():
            prompt = gr.Textbox(label="Prompt", lines=2, elem_id="sweep-prompt")
            negative = gr.Textbox(label="Negative prompt")
            with gr.Row():
                steps = gr.Slider(1, 150, value=20, step=1, label="Steps")
                guidance = gr.Slider(0, 30, value=7.5, step=0.5, label="Guidance scale")
                seed = gr.Number(value=1, precision=0, label="Seed")
            scheduler = gr.Dropdown(SCHEDULER_CHOICES, value="default", label="Scheduler")
            with gr.Row():
                x_param = gr.Dropdown(TEXT2IMG_AXES, value="guidance_scale", label="X axis")
                x_values = gr.Textbox(value="1, 4, 7.5", label="X values (comma-separated)")
            with gr.Row():
                y_param = gr.Dropdown(["(none)", *TEXT2IMG_AXES], value="seed", label="Y axis")
                y_values = gr.Textbox(value="1, 2", label="Y values")
            with gr.Row():
                go = gr.Button("Run sweep", variant="primary")
                cancel = gr.Button("Stop after this batch", variant="stop")
        with gr.Column():
            grid = gr.Image(label="Grid", type="filepath", interactive=False)
            status = gr.Markdown()

    def values_of(text: str, field: str) -> list:
        try:
            values = yaml.safe_load(f"[{text}]")
        except yaml.YAMLError:
            raise InputError(f"{field}: {text!r} is not a comma-separated list of values") from None
        if not values:
            raise InputError(f"{field}: give at least one value")
        return values

    def run(prompt, negative, steps, guidance, seed, scheduler, x_param, x_values, y_param, y_values,
            progress=gr.Progress()):
        try:
            config = {"name": f"app-{x_param}" + (f"-{y_param}" if y_param != "(none)" else ""),
                      "model": studio.model_name, "device": studio.device, "dtype": studio.dtype,
                      "params": {"prompt": prompt, "negative_prompt": negative or "",
                                 "num_inference_steps": _int(steps, "num_inference_steps"),
                                 "guidance_scale": guidance, "seed": _int(seed, "seed"),
                                 **({} if scheduler in (None, "default") else {"scheduler": scheduler})},
                      "x": {"param": x_param, "values": values_of(x_values, "x.values")}}
            if y_param and y_param != "(none)":
                config["y"] = {"param": y_param, "values": values_of(y_values, "y.values")}
            run_dir = sweep.prepare_run(sweep.resolve(config), studio.results)
        except InputError as e:
            raise gr.Error(str(e), print_exception=False)
        total = len(sweep.plan(sweep.load_resolved(run_dir)))
        failure, stop = [], threading.Event()  # this sweep's own flag: Stop ends it after the current batch

        def work():
            with studio.lock:
                studio.cancel = stop
                try:
                    sweep.execute(run_dir, progress=False, model=studio.model, stop_event=stop)
                except KeyboardInterrupt:
                    pass
                except Exception as e:  # noqa: BLE001
                    failure.append(f"{type(e).__name__}: {e}")

        worker = threading.Thread(target=work, daemon=True)
        worker.start()
        try:
            while worker.is_alive():
                done = len(runs.read_manifest(run_dir))
                progress((done, total), desc=f"{done}/{total} images")
                yield gr.skip(), f"{done}/{total} images…"
                time.sleep(0.3)
        finally:  # the page went away: stop after the current batch (the run resumes with --resume)
            if worker.is_alive():
                stop.set()
        if failure:
            raise gr.Error(failure[0], print_exception=False)
        result = sweep.SweepRun(run_dir)
        grids = result.grid_paths()
        if not result.complete:
            yield None, f"Stopped: {len(result.images)}/{total} images in `{run_dir}` (`difflab sweep --resume {run_dir}`)"
            return
        yield str(grids[0]), f"Done: {len(result.images)} images, {len(result.failed)} failed · `{run_dir}/index.html`"

    go.click(run, [prompt, negative, steps, guidance, seed, scheduler, x_param, x_values, y_param, y_values],
             [grid, status], api_name="sweep", concurrency_limit=1, concurrency_id="device")
    cancel.click(studio.stop_current, None, None, queue=False, api_name="cancel_sweep")


def gallery_tab(studio: Studio) -> dict:
    """Browse results/: newest first, each image's parameters, and reuse them."""
    def images():
        found = [p for p in studio.results.glob("**/*.png")
                 if not p.name.startswith(("grid", "mask")) and ".gradio" not in p.parts]
        return [str(p) for p in sorted(found, key=lambda p: p.stat().st_mtime, reverse=True)[:200]]

    with gr.Row():
        with gr.Column(scale=2):
            refresh = gr.Button("Refresh")
            gallery = gr.Gallery(value=images, label="results/", columns=6, height="auto", elem_id="gallery-all")
        with gr.Column(scale=1):
            info = gr.Markdown("Select an image to see its parameters.")
            reuse = gr.Button("Reuse these parameters", variant="primary")
            to_img2img = gr.Button("Send to image to image")
            to_inpaint = gr.Button("Send to inpaint")
    refresh.click(images, None, gallery, api_name="gallery")
    return {"gallery": gallery, "info": info, "reuse": reuse, "to_img2img": to_img2img, "to_inpaint": to_inpaint}


def launch(model: str = "shapes", host: str = "127.0.0.1", port: int = 7860, share: bool = False,
           results=runs.DEFAULT_ROOT, device: str = "auto", dtype: str = "auto", block: bool = True, lora=(),
           controlnet=()):
    """Start the server (one job at a time; only results/ and Gradio's own files are served); `lora`: LoRAs
    ('PATH[:WEIGHT]') applied to every image; `controlnet`: ControlNets, each tab then takes a control image."""
    studio = Studio(model, results, device, dtype, lora, controlnet)
    studio.model  # load now: a bad model fails here, not at the first click
    page = build(studio)
    page.queue(default_concurrency_limit=1)
    page.launch(server_name=host, server_port=port, share=share, allowed_paths=[str(studio.results)],
                prevent_thread_lock=not block, quiet=not block, show_error=True)
    return page
