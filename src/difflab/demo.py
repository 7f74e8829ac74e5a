"""`make demo`: difflab's main job, offline, with the tiny model: a text-to-image batch and an inpainting batch."""

from __future__ import annotations

import os
import sys

from .samples import sample_photo_file

DEMO_PROMPTS = ["a watercolor fox in a snowy forest", "a lighthouse at dusk, oil painting",
                "an astronaut riding a horse on the moon"]


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
    ]
    for argv in steps:
        print(f"\n$ difflab {' '.join(argv)}", file=sys.stderr)
        if main(argv) != 0:
            raise SystemExit(f"demo: `difflab {argv[0]}` failed")
    print(f"\nDemo done: the images (each carrying its parameters; try `difflab info FILE`) are in the "
          f"newest *-demo-* folders under {out}/", file=sys.stderr)
