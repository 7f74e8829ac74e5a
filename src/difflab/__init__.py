"""difflab: a lab for experimenting with diffusion image models, thin over Hugging Face diffusers.

    import difflab
    sd = difflab.load("tiny")                       # sd.pipe is the diffusers pipeline
    out = difflab.generate(sd, prompt="a red fox", seed=1)
    out[0].save("fox.png")                          # PNG with A1111 infotext + full JSON record
"""

from .errors import InputError
from .generate import GeneratedImage, generate, regenerate, version
from .masks import make_mask
from .metadata import read as read_metadata
from .params import SCHEDULERS, GenerationParams
from .pipelines import Model, load
from .sweep import SweepRun, run_sweep

__version__ = version()

__all__ = ["GeneratedImage", "GenerationParams", "InputError", "Model", "SCHEDULERS", "SweepRun", "generate",
           "load", "make_mask", "read_metadata", "regenerate", "run_sweep"]
