"""Image metadata: AUTOMATIC1111 'parameters' infotext and difflab's full JSON, in PNG text chunks.

Plain data: nothing here knows about pipelines. A record is a dict holding at least the generation
parameters (diffusers' names) plus `model`, `sampler`, `seed`, `height` and `width`.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from PIL import Image
from PIL.PngImagePlugin import PngInfo

JSON_KEY = "difflab"
INFOTEXT_KEY = "parameters"


def _quote(value) -> str:
    """A1111 quotes a value holding ',', ':' or a newline as a JSON string."""
    text = str(value)
    return json.dumps(text, ensure_ascii=False) if re.search(r"[,:\n]", text) else text


def infotext(record: dict) -> str:
    """The AUTOMATIC1111 infotext that Stable Diffusion metadata readers parse:

        <prompt>
        Negative prompt: <negative prompt>          (omitted when empty)
        Steps: 20, Sampler: DDIM, CFG scale: 7.5, Seed: 1234, Size: 512x512, Model hash: ..., Model: ...

    LoRAs appear as AUTOMATIC1111 writes them: `<lora:NAME:WEIGHT>` after the prompt, and `Lora hashes`;
    ControlNets as its ControlNet extension does (`controlnet_fields`).
    """
    model = record.get("model") or {}
    fields = [
        ("Steps", record["num_inference_steps"]),
        ("Sampler", record.get("sampler")),
        ("CFG scale", record["guidance_scale"]),
        ("Seed", record["seed"]),
        ("Size", f"{record['width']}x{record['height']}"),
        ("Model hash", (model.get("hash") or "")[:10] or None),
        ("Model", model.get("name")),
        ("Denoising strength", record.get("strength")),
        ("Eta", record.get("eta") or None),
        ("Lora hashes", ", ".join(f"{x['name']}: {(x.get('sha256') or '')[:12]}" for x in model["lora"])
         if model.get("lora") else None),
        ("Lora scale", record.get("lora_scale") if model.get("lora") else None),
        ("TI hashes", ", ".join(f"{x['token']}: {(x.get('sha256') or '')[:12]}" for x in model["textual_inversion"]
                                if x.get("token")) or None if model.get("textual_inversion") else None),
        *controlnet_fields(record),
        ("Mask from", record.get("mask_from") or None),
        ("Mask refine", record.get("mask_refine") if record.get("mask_from") else None),
        ("Mask reference", (record["mask_reference"] or '""') if record.get("mask_from")
         and record.get("mask_reference") is not None else None),
        ("Version", f"difflab {record['versions']['difflab']}" if record.get("versions") else None),
    ]
    # AUTOMATIC1111 names the LoRAs in the prompt itself: <lora:NAME:WEIGHT>
    tags = "".join(f" <lora:{x['name']}:{x.get('weight', 1.0):g}>" for x in model.get("lora") or [] if "name" in x)
    lines = [record["prompt"] + tags]
    if record.get("negative_prompt"):
        lines.append(f"Negative prompt: {record['negative_prompt']}")
    lines.append(", ".join(f"{k}: {_quote(v)}" for k, v in fields if v is not None))
    return "\n".join(lines)


def _each(value, count: int) -> list:
    values = list(value) if isinstance(value, (list, tuple)) else [value]
    return values * count if len(values) == 1 else values


def controlnet_fields(record: dict) -> list[tuple[str, str]]:
    """`ControlNet i: "Module: canny, Model: NAME [HASH8], Weight: 1, Guidance Start: 0, Guidance End: 1, ..."`, as
    AUTOMATIC1111's ControlNet extension writes them."""
    nets = (record.get("model") or {}).get("controlnet") or []
    n = len(nets)
    columns = zip(nets, _each(record.get("control_preprocess", "none"), n),
                  _each(record.get("controlnet_conditioning_scale", 1.0), n),
                  _each(record.get("control_guidance_start", 0.0), n),
                  _each(record.get("control_guidance_end", 1.0), n))
    mode = "ControlNet is more important" if record.get("guess_mode") else "Balanced"
    return [(f"ControlNet {i}", f"Module: {module}, Model: {net['name']} [{(net.get('hash') or '')[:8]}], "
                                f"Weight: {weight:g}, Guidance Start: {start:g}, Guidance End: {end:g}, "
                                f"Control Mode: {mode}")
            for i, (net, module, weight, start, end) in enumerate(columns)]


def parse_infotext(text: str) -> dict:
    """Read an A1111 infotext back: {'prompt', 'negative_prompt', and each 'Key: value' field as a string}."""
    lines = text.strip("\n").split("\n")
    *head, last = lines if len(lines) > 1 else (lines + [""])
    fields = {}
    if re.match(r"^\s*Steps: ", last):
        for key, value in re.findall(r'\s*([\w \-/]+):\s*("(?:\\.|[^\\"])*"|[^,]*)(?:,|$)', last):
            fields[key.strip()] = json.loads(value) if value.startswith('"') else value.strip()
    else:
        head = lines
    prompt, negative, in_negative = [], [], False
    for line in head:
        if line.startswith("Negative prompt:"):
            in_negative = True
            line = line[len("Negative prompt:"):].strip()
        (negative if in_negative else prompt).append(line)
    text = "\n".join(prompt)
    loras = re.findall(r"<lora:([^:>]+):([^>]+)>", text)
    if loras:
        fields["loras"] = [(name, float(weight)) for name, weight in loras]
        text = re.sub(r"\s*<lora:[^>]+>", "", text)
    return {"prompt": text, "negative_prompt": "\n".join(negative), **fields}


def png_info(record: dict) -> PngInfo:
    info = PngInfo()
    info.add_text(INFOTEXT_KEY, infotext(record))
    info.add_text(JSON_KEY, json.dumps(record, ensure_ascii=False, sort_keys=True))
    return info


def read(path) -> dict:
    """The metadata of an image file: {'parameters': infotext or None, 'difflab': dict or None}."""
    with Image.open(Path(path)) as im:
        text = dict(getattr(im, "text", None) or im.info)
    record = text.get(JSON_KEY)
    return {"parameters": text.get(INFOTEXT_KEY), "difflab": json.loads(record) if record else None}
