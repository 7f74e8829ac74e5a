"""difflab: a lab for experimenting with diffusion image models, thin over Hugging Face diffusers.

    import difflab
    sd = difflab.load("tiny")                       # sd.pipe is the diffusers pipeline
    out = difflab.generate(sd, prompt="a red fox", seed=1)
    out[0].save("fox.png")                          # PNG with A1111 infotext + full JSON record
"""

__version__ = "0.1.0"

from .generate import GeneratedImage, generate, regenerate  # noqa: E402
from .masks import make_mask  # noqa: E402
from .metadata import read as read_metadata  # noqa: E402
from .params import SCHEDULERS, GenerationParams, InputError  # noqa: E402
from .pipelines import Model, load  # noqa: E402
from .sweep import SweepRun, run_sweep  # noqa: E402

__all__ = ["GeneratedImage", "GenerationParams", "InputError", "Model", "SCHEDULERS", "SweepRun", "generate",
           "load", "make_mask", "read_metadata", "regenerate", "run_sweep"]
