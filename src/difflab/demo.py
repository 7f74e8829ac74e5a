"""`make demo`: difflab's main job, offline, with the tiny model.

A text-to-image batch, an inpainting batch, and two of the shipped sweeps (guidance x seed, and the inpainting
"realistic green dragon" strength x guidance), each through the `difflab` command line as a user would run it.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from .samples import sample_photo_file

DEMO_PROMPTS = ["a watercolor fox in a snowy forest", "a lighthouse at dusk, oil painting",
                "an astronaut riding a horse on the moon"]
CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "sweeps"


def run_demo(out: str = "results") -> None:
    from .cli import main

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    prompts_file = sample_photo_file().parent / "demo-prompts.txt"
    prompts_file.write_text("\n".join(DEMO_PROMPTS) + "\n")
    photo = sample_photo_file("china", 128)
    steps = [
        ["generate", "--model", "tiny", "--prompts-file", str(prompts_file), "--num-images", "2", "--seed", "0",
         "--steps", "20", "--scheduler", "dpm++_2m_karras", "--out", out, "--name", "demo-text2img"],
        ["inpaint", "--model", "tiny", "--image", str(photo), "--box", "0.3,0.35,0.75,0.9",
         "--prompt", "a realistic green dragon", "--negative-prompt", "cartoon", "--num-images", "2",
         "--seed", "0", "--steps", "20", "--feather", "3", "--out", out, "--name", "demo-inpaint"],
        ["sweep", str(CONFIGS / "guidance.yaml"), "--set", "model=tiny", "--set", "name=demo-guidance",
         "--out", out],
        ["sweep", str(CONFIGS / "inpaint_dragon.yaml"), "--set", "model=tiny", "--set", "image=sample:china:128",
         "--set", "params.num_inference_steps=20", "--set", "name=demo-inpaint-dragon", "--out", out],
    ]
    before = set(Path(out).glob("*")) if Path(out).exists() else set()
    for argv in steps:
        print(f"\n$ difflab {' '.join(argv)}", file=sys.stderr)
        if main(argv) != 0:
            raise SystemExit(f"demo: `difflab {argv[0]}` failed")
    made = sorted(set(Path(out).glob("*")) - before)
    print("\nDemo done (tiny random-weight model: the images are noise; the machinery is real). Results:",
          file=sys.stderr)
    for run in made:
        page = run / "index.html"
        print(f"  {page if page.exists() else run}", file=sys.stderr)
    print("Every PNG carries its parameters: `difflab info FILE`; `difflab generate --from FILE` remakes it.",
          file=sys.stderr)
