"""The `difflab` command line.

Arguments are parsed and validated before torch or diffusers is imported, so `--help` and every bad-argument
path answer at once. Bad input is one line on stderr naming the field, exit status 2, and nothing on disk.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from pathlib import Path

from . import config as configs
from . import inputs, masks, metadata, pipelines, runs, threads, tracking
from .errors import InputError
from .params import SCHEDULERS, GenerationParams

EXIT_BAD_INPUT = 2
FAST_PATHS = ("channels_last", "fuse_qkv", "compile")
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, what the shell reports for `cat` in the same place


class Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, no usage block
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message}\n")


def _add_generation_args(p: argparse.ArgumentParser, task: str) -> None:
    d = GenerationParams()
    g = p.add_argument_group("generation")
    if task == "text2img":
        g.add_argument("--prompt", help="text prompt")
        g.add_argument("--prompts-file", metavar="FILE", help="one prompt per line (# comments and blank lines skipped)")
        g.add_argument("--from", dest="from_image", metavar="IMAGE.png",
                       help="regenerate an image from its metadata; other flags given override its parameters")
    else:
        g.add_argument("--prompt", help="text prompt")
        g.add_argument("--prompts-file", metavar="FILE", help="one prompt per line")
        g.add_argument("--image", required=True, help="input image")
        g.add_argument("--strength", type=float,
                       help=f"how much to change the image, in (0, 1] (default {0.8 if task == 'img2img' else 1.0})")
    g.add_argument("--negative-prompt", help="what to steer away from")
    g.add_argument("--steps", type=int, help=f"num_inference_steps (default {d.num_inference_steps})")
    g.add_argument("--guidance", type=float, help=f"guidance_scale, >= 0 (default {d.guidance_scale})")
    g.add_argument("--seed", type=int, help="seed of the first image; image i uses seed+i (default: random)")
    g.add_argument("--num-images", type=int, help="images per prompt (default 1)")
    g.add_argument("--width", type=int, help="multiple of 8 (default: the model's size, or the input image's)")
    g.add_argument("--height", type=int, help="multiple of 8 (default: the model's size, or the input image's)")
    g.add_argument("--scheduler", help=f"one of {', '.join(SCHEDULERS)} (default: the model's own)")
    g.add_argument("--eta", type=float, help="DDIM eta in [0, 1] (default 0)")
    g.add_argument("--lora-scale", type=float, help="strength of the loaded LoRA weights (default 1.0)")
    if task == "inpaint":
        m = p.add_argument_group("mask")
        m.add_argument("--mask", help="mask image: white is repainted, black kept")
        m.add_argument("--box", action="append", default=[], metavar="X0,Y0,X1,Y1",
                       help="a box to repaint, in pixels or as fractions (0.25,0.25,0.75,0.75); repeatable")
        m.add_argument("--ellipse", action="append", default=[], metavar="X0,Y0,X1,Y1",
                       help="an ellipse inside this box; repeatable")
        m.add_argument("--dilate", type=int, help="grow the mask by N pixels")
        m.add_argument("--feather", type=float, help="blur the mask edge by R pixels when pasting back")
        m.add_argument("--keep-unmasked", action="store_true", default=None,
                       help="keep every unmasked pixel exactly as in the input")
        m.add_argument("--resize-mask", action="store_true", default=None,
                       help="resize a mask image of another size to the image's size")
        m.add_argument("--mask-from", metavar="WORDS",
                       help="repaint where the model places these words, e.g. 'red circle' (DiffEdit; no other "
                            "weights)")
        m.add_argument("--mask-from-detector", metavar="WEIGHTS:CLASS",
                       help="repaint what a YOLO segmentation model finds (needs `pip install ultralytics` and its "
                            "weights file, e.g. yolov8n-seg.pt:person; not installed by difflab)")
        m.add_argument("--mask-threshold", type=float,
                       help=f"for --mask-from: a pixel joins the mask where the words change the predicted noise by "
                            f"more than T/2 times its mean (default {d.mask_threshold:g}; lower: larger masks)")
        m.add_argument("--mask-refine", metavar="segments|strongest|none",
                       help="for --mask-from: snap the mask to the image's regions (segments, the default), take "
                            "the regions where the words explain the image better than the reference and no text, "
                            "whole (strongest: the words' signed evidence, for flat objects such as the shapes "
                            "world's; ignores the threshold), or keep it as found, as coarse as the latents (none)")
        m.add_argument("--mask-reference", metavar="TEXT",
                       help="for --mask-from: the text the words are read against (DiffEdit's reference); default: "
                            "the prompt, so the mask is where the edit changes the image; '' for none")
    c = p.add_argument_group("ControlNet (each flag once for all ControlNets, or once per --controlnet)")
    c.add_argument("--controlnet", action="append", default=[], metavar="ID_OR_PATH",
                   help="a ControlNet: hub id, ControlNetModel folder, .safetensors file or tiny-controlnet; "
                        "repeatable")
    c.add_argument("--control-image", action="append", default=[], metavar="PATH",
                   help="the control image of each --controlnet, in order")
    c.add_argument("--control-preprocess", action="append", metavar="canny|none",
                   help="turn the control image into edges first (canny), or use it as given (none, default)")
    c.add_argument("--control-scale", action="append", type=float, metavar="W",
                   help="controlnet_conditioning_scale in [0, 2] (default 1)")
    c.add_argument("--control-start", action="append", type=float, metavar="F",
                   help="control_guidance_start: the fraction of steps before the ControlNet starts (default 0)")
    c.add_argument("--control-end", action="append", type=float, metavar="F",
                   help="control_guidance_end: the fraction of steps after which it stops (default 1)")
    c.add_argument("--guess-mode", action="store_true", default=None,
                   help="the ControlNet sees no prompt and is weighted more (diffusers' guess_mode)")
    c.add_argument("--resize-control", action="store_true", default=None,
                   help="resize control images of another size to the image's size")
    o = p.add_argument_group("model and output")
    o.add_argument("--model", help=f"hub id, diffusers folder, .safetensors file, tiny or tiny-inpaint "
                                   f"(default {pipelines.DEFAULT_MODEL})")
    o.add_argument("--config", help="for a single-file model: a diffusers folder with its configs")
    o.add_argument("--lora", action="append", default=[], metavar="PATH[:WEIGHT]",
                   help="LoRA weights (file, folder or hub id), each with its own weight (default 1); repeatable")
    o.add_argument("--textual-inversion", action="append", default=[], metavar="PATH[:TOKEN]",
                   help="textual-inversion embedding; repeatable")
    o.add_argument("--device", default="auto", help="auto (cuda, then mps, then cpu), cpu, cuda, cuda:N, mps")
    o.add_argument("--dtype", default="auto", help="auto (float16 on GPU; on the CPU float32, or bfloat16 where a "
                                                   "one-time probe of the model finds it faster), float32, float16, "
                                                   "bfloat16")
    o.add_argument("--attention-slicing", action="store_true", help="lower peak memory, a little slower")
    o.add_argument("--vae-tiling", action="store_true", help="decode large images in tiles")
    o.add_argument("--cpu-offload", action="store_true", help="model CPU offload (CUDA only)")
    o.add_argument("--vae-slicing", action="store_true", help="decode a batch one image at a time (less memory)")
    o.add_argument("--channels-last", action="store_true", help="fast path: channels_last UNet and VAE")
    o.add_argument("--fuse-qkv", action="store_true", help="fast path: fused q/k/v projections")
    o.add_argument("--compile", action="store_true", help="fast path: torch.compile the UNet and VAE decoder")
    o.add_argument("--out", default=str(runs.DEFAULT_ROOT), help="results folder (default results/)")
    o.add_argument("--name", help="run name (default: from the prompt)")


ARG_TO_FIELD = {"prompt": "prompt", "negative_prompt": "negative_prompt", "steps": "num_inference_steps",
                "guidance": "guidance_scale", "seed": "seed", "num_images": "num_images", "width": "width",
                "height": "height", "scheduler": "scheduler", "eta": "eta", "lora_scale": "lora_scale",
                "strength": "strength", "dilate": "mask_dilate", "feather": "mask_blur",
                "keep_unmasked": "keep_unmasked", "resize_mask": "resize_mask", "mask_from": "mask_from",
                "mask_threshold": "mask_threshold", "mask_refine": "mask_refine",
                "mask_reference": "mask_reference",
                "mask_from_detector": "mask_from_detector", "control_preprocess": "control_preprocess",
                "control_scale": "controlnet_conditioning_scale", "control_start": "control_guidance_start",
                "control_end": "control_guidance_end", "guess_mode": "guess_mode", "resize_control": "resize_control"}


def _add_run_args(p, what: str, example: str, resume_help: str) -> None:
    """CONFIG, --set, --out, --resume, --no-progress and --tracker: shared by the commands that run from a YAML
    config."""
    p.add_argument("config", nargs="?", help=f"{what} YAML (not needed with --resume)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help=f"override a config value (dotted keys, YAML values): {example}")
    p.add_argument("--out", default=str(runs.DEFAULT_ROOT), help="results folder (default results/)")
    p.add_argument("--resume", metavar="RUN_DIR", help=resume_help)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    _add_tracker_arg(p)


def _add_tracker_arg(p) -> None:
    p.add_argument("--tracker", choices=tracking.TRACKERS,
                   help="mirror the run's records to Comet or TensorBoard (local records are always written)")


def build_parser() -> Parser:
    parser = Parser(prog="difflab", description="Reproducible Stable Diffusion experiments, thin over diffusers.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    for name, task, text in (("generate", "text2img", "text to image"), ("img2img", "img2img", "image to image"),
                             ("inpaint", "inpaint", "repaint a masked region")):
        p = sub.add_parser(name, help=text, description=text)
        p.set_defaults(task=task)
        _add_generation_args(p, task)
        _add_tracker_arg(p)
    p = sub.add_parser("sweep", help="a parameter sweep: labelled X/Y/Z grids, batched and resumable",
                       description="Run a sweep (configs/sweeps/*.yaml). Under `torchrun --nproc_per_node N -m difflab "
                                   "sweep CONFIG` (CPU workers) or `accelerate launch --multi_gpu --num_processes N "
                                   "...` (GPUs) the batches are shared among the processes.")
    _add_run_args(p, "sweep", "--set model=tiny --set x.values=[1,2]",
                  "finish an interrupted sweep, making only what is missing")
    p.add_argument("--dry-run", action="store_true", help="print the cells, image count and a time estimate")
    p.add_argument("--processes", type=int, default=1,
                   help="run as N processes (one GPU each where there are GPUs; torchrun CPU workers otherwise)")
    p = sub.add_parser("train", help="train a DDPM from scratch (configs/ddpm/*.yaml)",
                       description="Train a DDPM from scratch. Several GPUs: accelerate launch --multi_gpu "
                                   "--num_processes N -m difflab train CONFIG; CPU workers: torchrun --nproc_per_node N "
                                   "-m difflab train CONFIG")
    _add_run_args(p, "training", "--set steps=500 --set model.channels=64",
                  "continue a run from its latest checkpoint")
    p.add_argument("--data-dir", help="where the dataset is (same as --set data.data_dir=...)")
    p = sub.add_parser("train-sd", help="train a Stable Diffusion model, stage by stage (configs/shapes/*.yaml)",
                       description="Train (or fine-tune) the parts of a Stable Diffusion model that the config "
                                   "names; the run's model/ folder is a diffusers pipeline.")
    _add_run_args(p, "training", "--set steps=500 --set base=results/<vae run>/model",
                  "continue a run from its latest checkpoint")
    p = sub.add_parser("finetune", help="fine-tune any model: LoRA, DreamBooth, textual inversion, full, or train a "
                                        "ControlNet or an inpainting model (configs/finetune/*.yaml)",
                       description="Fine-tune a model difflab loads (`base`) on a folder of images: method lora, "
                                   "dreambooth, textual_inversion, full, controlnet (outlines of the shapes world, "
                                   "or a folder with conditioning images), or inpaint (a 9-channel inpainting UNet "
                                   "from the base's, trained on masked images). The run folder holds validation grids "
                                   "over steps, metrics with a validation loss, checkpoints, and lora/, embedding/, "
                                   "controlnet/ or model/.")
    _add_run_args(p, "fine-tuning", "--set base=shapes --set lora.rank=8",
                  "continue a run from its latest checkpoint")
    p = sub.add_parser("shapes-folder", help="write renders of a shapes-world prompt as a fine-tuning folder",
                       description="NNN.png with NNN.txt captions (kohya's convention), e.g. 8 hearts for DreamBooth.")
    p.add_argument("out", help="the folder to write")
    p.add_argument("--prompt", default="a heart", help="what to draw, in the world's words (default 'a heart')")
    p.add_argument("--n", type=int, default=8, help="how many images (default 8)")
    p.add_argument("--seed", type=int, default=0, help="image i is drawn from seed + i")
    p.add_argument("--call", metavar="WORDS", help="name every shape so in the captions, e.g. 'sks shape' for "
                                                   "DreamBooth: 'a red sks shape' (default: its own name)")
    for name, text in (("sample", "draw images from a trained DDPM"), ("eval", "score a trained DDPM")):
        p = sub.add_parser(name, help=text, description=text)
        p.add_argument("checkpoint", help="a training run folder, a checkpoint folder or an ema.safetensors file")
        p.add_argument("--sampler", choices=("ddim", "ddpm"), help="default: the training config's")
        p.add_argument("--steps", type=int, help="DDIM steps (DDPM always runs all T)")
        p.add_argument("--eta", type=float, help="DDIM eta in [0, 1]")
        p.add_argument("--guidance", type=float, help="classifier-free guidance scale")
        p.add_argument("--n", type=int, default=64 if name == "sample" else 1000, help="number of images")
        p.add_argument("--seed", type=int, default=0, help="image i uses seed + i")
        p.add_argument("--out", default=str(runs.DEFAULT_ROOT))
        if name == "sample":
            p.add_argument("--class", dest="classes", type=int, action="append", metavar="LABEL",
                           help="class label(s) to draw, repeatable (default: all classes in turn)")
            p.add_argument("--every", type=int, metavar="K", help="also save the trajectory every K steps")
    p = sub.add_parser("score", help="how well a model follows shapes-world prompts (GenEval's categories)",
                       description="Generate the fixed prompt suite of the shapes world and judge every image: the "
                                   "share correct per category and overall, as JSON and a table.")
    p.add_argument("model", help="a model difflab loads: a diffusers folder, a hub id, a .safetensors file")
    p.add_argument("--steps", type=int, default=20, help="num_inference_steps (default 20)")
    p.add_argument("--guidance", type=float, default=4.0, help="guidance_scale (default 4.0)")
    p.add_argument("--scheduler", default="dpm++_2m_karras", help="default dpm++_2m_karras")
    p.add_argument("--prompts-per-category", type=int, default=16, help="fewer for a quick look (default 16)")
    p.add_argument("--device", default="auto")
    p.add_argument("--dtype", default="auto")
    p.add_argument("--out", default=str(runs.DEFAULT_ROOT))
    p = sub.add_parser("info", help="print the parameters stored in an image")
    p.add_argument("image")
    p.add_argument("--json", action="store_true", help="print only the JSON record")
    p = sub.add_parser("demo", help="the lab tour: every notebook and the shipped sweeps, one page for all")
    p.add_argument("--params", default="configs/notebooks/offline.yaml", metavar="FILE",
                   help="notebook parameters and sweeps (default: offline, tiny model and digits)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a notebook parameter, repeatable")
    p.add_argument("--out", default=str(runs.DEFAULT_ROOT))
    p = sub.add_parser("runs", help="list the runs under a folder, or show one: difflab runs [DIR] | runs show RUN")
    p.add_argument("what", nargs="*", metavar="DIR | show RUN", help="default: results/")
    p = sub.add_parser("app", help="the web UI (Gradio), on http://127.0.0.1:7860 by default")
    p.add_argument("--model", default="shapes", help="shapes (default: trained here on first use), tiny, a hub id, "
                                                     "a local folder or a .safetensors file")
    p.add_argument("--host", default="127.0.0.1", help="the address to bind (0.0.0.0 opens it to the network)")
    p.add_argument("--port", type=int, default=7860)
    p.add_argument("--share", action="store_true", help="also open a public gradio.live link (off by default)")
    p.add_argument("--lora", action="append", default=[], metavar="PATH[:WEIGHT]",
                   help="LoRA weights for every image, each with its own weight; repeatable")
    p.add_argument("--controlnet", action="append", default=[], metavar="ID_OR_PATH",
                   help="a ControlNet: every tab then takes a control image (repeatable: one image drives all)")
    p.add_argument("--results", default=str(runs.DEFAULT_ROOT), help="where images are written and served from")
    p.add_argument("--device", default="auto")
    p.add_argument("--dtype", default="auto")
    p = sub.add_parser("notebooks", help="run notebooks in batch with papermill")
    nb = p.add_subparsers(dest="action", required=True)
    p = nb.add_parser("run", help="execute notebooks into results/<timestamp>-notebooks/ with a summary")
    p.add_argument("names", nargs="*", metavar="NAME", help="01, 01_text_to_image, ... (default: all)")
    p.add_argument("--params", metavar="FILE", action="append",
                   help="a parameter file, e.g. configs/notebooks/offline.yaml; repeatable, later files win")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a notebook parameter (a YAML value), repeatable")
    p.add_argument("--out", default=str(runs.DEFAULT_ROOT))
    _add_tracker_arg(p)
    p = nb.add_parser("list", help="the notebooks and the parameters each declares")
    return parser


def _read_prompts(path: str) -> list[str]:
    p = Path(path)
    if not p.is_file():
        raise InputError(f"prompts_file: {path!r} does not exist or is not a file")
    try:
        lines = p.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"prompts_file: {path!r} is not readable UTF-8 text ({e})") from None
    prompts = [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    if not prompts:
        raise InputError(f"prompts_file: {path!r} holds no prompt; write one prompt per line")
    return prompts


def _request(args) -> tuple[GenerationParams, list[str], dict | None]:
    """The validated request: base parameters, the prompts, and the source record of --from."""
    given = {field: getattr(args, arg) for arg, field in ARG_TO_FIELD.items()
             if getattr(args, arg, None) is not None}
    for field, value in given.items():   # a repeatable flag given once is one value for every ControlNet
        if isinstance(value, list):
            given[field] = value[0] if len(value) == 1 else value
    if getattr(args, "box", None):
        given["boxes"] = [masks.parse_box(b, "box") for b in args.box]
    if getattr(args, "ellipse", None):
        given["ellipses"] = [masks.parse_box(b, "ellipse") for b in args.ellipse]
    record = None
    if getattr(args, "from_image", None):
        if args.prompts_file:
            raise InputError("prompts_file: cannot be combined with --from")
        inputs.open_image(args.from_image, "from")
        record = metadata.read(args.from_image)["difflab"]
        if record is None:
            raise InputError(f"from: {args.from_image!r} carries no difflab metadata (see `difflab info`)")
        from .generate import params_from_record
        params = GenerationParams.from_dict({**params_from_record(record).to_dict(), **given})
    else:
        params = GenerationParams.from_dict({"task": args.task, **given})
    prompts = [params.prompt]
    if args.prompts_file:
        if args.prompt is not None:
            raise InputError("prompt: give --prompt or --prompts-file, not both")
        prompts = _read_prompts(args.prompts_file)
        params.prompt = prompts[0]
    elif not params.prompt:
        raise InputError("prompt: missing; give --prompt TEXT or --prompts-file FILE")
    for prompt in prompts:
        GenerationParams.from_dict({**params.to_dict(), "prompt": prompt}).validate()
    return params, prompts, record


def _model_options(args, record) -> dict:
    if record is not None and args.model is None:  # --from: the image's own model, unless told otherwise
        from .generate import model_options
        args.model, recorded = model_options(record)
        args.lora = args.lora or recorded["lora"]
        args.textual_inversion = args.textual_inversion or recorded["textual_inversion"]
        args.controlnet = args.controlnet or recorded["controlnet"]
        args.device = recorded["device"] if args.device == "auto" else args.device
        args.dtype = recorded["dtype"] if args.dtype == "auto" else args.dtype
        for fast in FAST_PATHS:  # the image was made with these: keep them, so the pixels are the same
            setattr(args, fast, getattr(args, fast) or recorded.get(fast, False))
    return dict(device=args.device, dtype=args.dtype, lora=args.lora, textual_inversion=args.textual_inversion,
                controlnet=args.controlnet, attention_slicing=args.attention_slicing, vae_tiling=args.vae_tiling,
                cpu_offload=args.cpu_offload, config=args.config, vae_slicing=args.vae_slicing,
                **{fast: getattr(args, fast) for fast in FAST_PATHS})


def cmd_generate(args) -> int:
    # 1. validate everything that needs no model: parameters, files, masks, model source, device names
    params, prompts, record = _request(args)
    image = getattr(args, "image", None)
    mask = getattr(args, "mask", None)
    if record is not None:   # --from: the image's own input image and mask (found again by their recorded hash)
        from .generate import recorded_input
        image, mask = image or recorded_input(record, "image"), mask or recorded_input(record, "mask_image")
    inputs.prepare(params, image, mask)
    options = _model_options(args, record)
    control_image = _check_control(args, params, record)
    pipelines.check_device_dtype(args.device, args.dtype)
    args.model = args.model or pipelines.DEFAULT_MODEL
    pipelines.resolve_source(args.model)

    # 2. load (heavy imports from here on)
    from .generate import generate_run
    model = pipelines.load(args.model, params.task, **options)

    # 3. generate and save; the run folder appears with the first image
    requests = [GenerationParams.from_dict({**params.to_dict(), "prompt": prompt}) for prompt in prompts]
    recorded = record.get("cpu_threads") if record is not None else None  # --from: the image's own thread count
    with threads.recorded(recorded, getattr(args, "from_image", None), model.device):
        run = generate_run(model, requests, image=image, mask_image=mask, control_image=control_image, out=args.out,
                           name=args.name or prompts[0], command=["difflab", *sys.argv[1:]],
                           tracker=args.tracker or "local", progress=True,
                           from_record=record if record is not None and not _overrides(args) else None,
                           on_saved=lambda paths: print(*paths, sep="\n"))
    where = f" in {run.dir}" if run.dir else ""
    if run.status == "interrupted":
        print(f"difflab: interrupted; {len(run.images)} image(s) saved{where}", file=sys.stderr)
        return EXIT_INTERRUPTED
    print(f"{len(run.images)} image(s){where}", file=sys.stderr)
    return 0


def _check_control(args, params, record) -> list[str]:
    """The control images, checked against the ControlNets before any model loads (their size is checked once the
    model's default size is known, before anything is written)."""
    for spec in args.controlnet:
        pipelines.resolve_controlnet(spec)
    if params.mask_from_detector:
        from .control import check_detector
        check_detector(params.mask_from_detector)
    for field in ("control_preprocess", "controlnet_conditioning_scale", "control_guidance_start",
                  "control_guidance_end"):
        params.per_controlnet(field, max(1, len(args.controlnet)))
    if record is not None and not args.control_image:
        return []   # --from: the image's own control images (found again by their recorded hash)
    if len(args.control_image) != len(args.controlnet):
        raise InputError(f"control_image: {len(args.control_image)} control image(s) for {len(args.controlnet)} "
                         f"ControlNet(s); give one --control-image per --controlnet, in order")
    for i, path in enumerate(args.control_image):
        inputs.open_image(path, f"control_image {i}")
    return args.control_image


def _overrides(args) -> bool:
    return any(getattr(args, arg, None) is not None for arg in ARG_TO_FIELD)


def cmd_score(args) -> int:
    params = GenerationParams.from_dict({"prompt": "a circle", "num_inference_steps": args.steps,
                                         "guidance_scale": args.guidance, "scheduler": args.scheduler}).validate()
    if args.prompts_per_category < 1:
        raise InputError(f"prompts_per_category: {args.prompts_per_category} is not allowed; use an integer >= 1")
    pipelines.check_device_dtype(args.device, args.dtype)
    pipelines.resolve_source(args.model)
    from .shapes import score

    model = pipelines.load(args.model, device=args.device, dtype=args.dtype, progress=False)
    draw = score.model_drawer(model, num_inference_steps=params.num_inference_steps,
                              guidance_scale=params.guidance_scale, scheduler=params.scheduler)
    result = score.score(draw, score.suite(args.prompts_per_category))
    run = runs.new_run_dir(f"score-{Path(args.model).name}", args.out)
    result = {"model": model.describe(), "params": {"num_inference_steps": args.steps, "guidance_scale": args.guidance,
                                                    "scheduler": args.scheduler}, **result}
    runs.write_json(run / "score.json", result)
    runs.atomic_write(run / "score.txt", score.table(result) + "\n")
    print(score.table(result))
    print(run / "score.json")
    return 0


def cmd_info(args) -> int:
    inputs.open_image(args.image, "image")
    meta = metadata.read(args.image)
    if meta["parameters"] is None and meta["difflab"] is None:
        raise InputError(f"image: {args.image!r} carries no Stable Diffusion parameters")
    if not args.json and meta["parameters"]:
        print(meta["parameters"])
    if meta["difflab"] is not None:
        if not args.json:
            print()
        print(json.dumps(meta["difflab"], indent=2, ensure_ascii=False))
    return 0


def cmd_sweep(args) -> int:
    import subprocess

    from . import sweep

    if args.processes < 1:
        raise InputError(f"processes: {args.processes} is not allowed; use an integer >= 1")
    if args.resume:
        if args.config or args.overrides:
            raise InputError("resume: the run folder's sweep.yaml is the config; drop CONFIG and --set")
        sweep.load_resolved(args.resume)  # refuses a folder that is not a sweep run
        run_dir = args.resume
    else:
        if not args.config:
            raise InputError("config: missing; give a sweep YAML (configs/sweeps/) or --resume RUN_DIR")
        data = configs.apply_overrides(configs.load_yaml(args.config),
                                       args.overrides + ([f"tracker={args.tracker}"] if args.tracker else []))
        resolved = sweep.resolve(data)
        sweep.check_inputs(resolved)
        pipelines.check_device_dtype(resolved["device"], resolved["dtype"])
        pipelines.resolve_source(resolved["model"])
        if args.dry_run:
            print(sweep.dry_run(resolved))
            return 0
        # under a launcher (torchrun, accelerate), rank 0 creates the run folder and the other ranks are told its name
        run_dir = sweep.prepare_run(resolved, args.out) if sweep.process_state().is_main_process else ""
    if args.processes > 1:  # N workers on the same run folder; rank 0 assembles the grid and reports
        import torch
        flags = ["-m", "difflab", "sweep", "--resume", str(run_dir)] + (["--no-progress"] if args.no_progress else [])
        if torch.cuda.device_count() > 1:
            launch = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes",
                      str(args.processes), "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]
            return subprocess.call(launch + flags)
        # On the CPU, torchrun starts the workers (accelerate 1.x's `launch --cpu` runs a single process), each
        # with the run's recorded thread count: kernels sum in an order that depends on it.
        count = sweep.load_resolved(run_dir).get("cpu_threads") or torch.get_num_threads()
        env = {**os.environ, "OMP_NUM_THREADS": str(count)}
        return subprocess.call([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
                                str(args.processes), *flags], env=env)
    run = sweep.execute(run_dir, progress=not args.no_progress)
    if not sweep.process_state().is_main_process:
        return 0
    print(f"{run.dir}/index.html")
    for path in run.grid_paths():
        print(path)
    if run.failed:
        print(f"difflab: {len(run.failed)} image(s) failed: " +
              "; ".join(f"{r['cell']} seed {r['seed']}: {r['error']}" for r in run.failed), file=sys.stderr)
        return 1
    return 0


def cmd_train(args) -> int:
    """`difflab train` (the from-scratch DDPM) and `difflab train-sd` (Stable Diffusion models): one config, or
    --resume with the run folder's own."""
    if args.command == "train":
        from .ddpm.config import load_config
        from .ddpm.train import train
        folder = "configs/ddpm/"
    else:
        from .train.config import load_config
        from .train.loop import train
        folder = "configs/finetune/" if args.command == "finetune" else "configs/shapes/"
    data_dir = getattr(args, "data_dir", None)
    if args.resume:
        if args.config or args.overrides or data_dir:
            raise InputError("resume: the run folder's config.yaml is the config; drop CONFIG, --set, --data-dir")
        if not (Path(args.resume) / "config.yaml").is_file():
            raise InputError(f"resume: {args.resume!r} is not a training run folder (no config.yaml)")
        cfg = load_config(Path(args.resume) / "config.yaml")
    else:
        if not args.config:
            raise InputError(f"config: missing; give a training YAML ({folder}) or --resume RUN_DIR")
        extra = [f"data.data_dir={data_dir}"] if data_dir else []
        extra += [f"tracker={args.tracker}"] if args.tracker else []
        cfg = load_config(args.config, args.overrides + extra)
    run_dir = train(cfg, out=args.out, resume=args.resume, progress=not args.no_progress)
    print(run_dir)
    return 0


def cmd_shapes_folder(args) -> int:
    from .shapes import world

    try:   # write_folder checks n and the prompt before it writes anything
        paths = world.write_folder(args.out, args.prompt, args.n, args.seed, args.call)
    except ValueError as e:
        raise InputError(str(e)) from None
    print("\n".join(map(str, paths)))
    return 0


def _check_sampling_args(args) -> None:
    if args.steps is not None and args.steps < 1:
        raise InputError(f"steps: {args.steps} is not allowed; use an integer >= 1")
    if args.eta is not None and not 0 <= args.eta <= 1:
        raise InputError(f"eta: {args.eta} is not allowed; use a number in [0, 1]")
    if args.guidance is not None and args.guidance < 0:
        raise InputError(f"guidance: {args.guidance} is not allowed; use a number >= 0")
    if args.n < 1:
        raise InputError(f"n: {args.n} is not allowed; use an integer >= 1")


def cmd_sample(args) -> int:
    _check_sampling_args(args)
    from .ddpm.generation import sample_to_folder

    run = sample_to_folder(args.checkpoint, sampler=args.sampler, steps=args.steps, eta=args.eta,
                           guidance_scale=args.guidance, classes=args.classes, n=args.n, seed=args.seed,
                           every=args.every, out=args.out)
    print(run / "grid.png")
    return 0


def cmd_eval(args) -> int:
    _check_sampling_args(args)
    from .ddpm.evaluate import evaluate_checkpoint

    report = evaluate_checkpoint(args.checkpoint, n=args.n, sampler=args.sampler, steps=args.steps, eta=args.eta,
                                 guidance_scale=args.guidance, seed=args.seed)
    run = runs.new_run_dir("eval", args.out)
    runs.write_json(run / "eval.json", report)
    for key, value in report.items():
        print(f"{key:>28}: {value:.4f}" if isinstance(value, float) else f"{key:>28}: {value}")
    print(run / "eval.json")
    return 0


def cmd_demo(args) -> int:
    from .demo import run_tour

    run_tour(args.params, args.out, args.overrides)
    return 0


def cmd_runs(args) -> int:
    from . import listing

    if args.what[:1] == ["show"]:
        if len(args.what) != 2:
            raise InputError("runs show: give one run folder: difflab runs show RUN")
        print(listing.show(args.what[1]))
        return 0
    if len(args.what) > 1:
        raise InputError(f"runs: {' '.join(args.what)!r}; use difflab runs [DIR] or difflab runs show RUN")
    root = args.what[0] if args.what else str(runs.DEFAULT_ROOT)
    found = listing.list_runs(root)
    print(listing.table(found) if found else f"no runs under {root}")
    return 0


def cmd_app(args) -> int:
    if not 0 < args.port < 65536:
        raise InputError(f"port: {args.port} is not allowed; use 1 .. 65535")
    pipelines.check_device_dtype(args.device, args.dtype)
    pipelines.resolve_source(args.model)
    for spec in args.controlnet:
        pipelines.resolve_controlnet(spec)
    try:
        from .app import launch
    except ImportError as e:
        raise InputError(f"app: needs gradio ({e.name} is not installed): pip install 'difflab[app]'") from None

    launch(args.model, args.host, args.port, args.share, args.results, args.device, args.dtype, lora=args.lora,
           controlnet=args.controlnet)
    return 0


def cmd_notebooks(args) -> int:
    from . import notebooks

    if args.action == "list":
        for path in notebooks.available():
            params = notebooks.declared(path)
            print(f"{path.stem}: " + ", ".join(f"{k}={v['default']}" for k, v in params.items()))
        return 0
    run_dir, results = notebooks.run(args.names, args.params, args.overrides, args.out,
                                     tracker=args.tracker or "local")
    print(notebooks.summary_table(results))
    print(run_dir)
    return 0 if all(r.status == "ok" for r in results) else 1


def _one_line_warnings(message, category, filename, lineno, file=None, line=None):
    print(f"difflab: warning: {message}", file=sys.stderr)


def main(argv=None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except BrokenPipeError:  # --help into a closed pipe
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    warnings.showwarning = _one_line_warnings
    handler = {"generate": cmd_generate, "img2img": cmd_generate, "inpaint": cmd_generate,
               "sweep": cmd_sweep, "train": cmd_train, "train-sd": cmd_train, "finetune": cmd_train,
               "shapes-folder": cmd_shapes_folder, "sample": cmd_sample, "eval": cmd_eval,
               "info": cmd_info, "score": cmd_score, "demo": cmd_demo, "notebooks": cmd_notebooks,
               "app": cmd_app, "runs": cmd_runs}[args.command]
    try:
        code = handler(args)
        sys.stdout.flush()
        return code
    except BrokenPipeError:  # the reader went away (`difflab info IMAGE | head`): stop quietly, as `cat` does
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error when Python exits
        return EXIT_BROKEN_PIPE
    except InputError as e:
        print(f"difflab {args.command}: error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("difflab: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
