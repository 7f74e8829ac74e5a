"""The shapes model's tokenizer: a CLIP BPE tokenizer whose vocabulary holds every word of the world's captions
as one token, and every byte besides, so that any other text still tokenizes (into bytes).

Stable Diffusion's CLIP tokenizer is byte-level BPE: a word becomes its bytes (the last one marked `</w>`), then
merges join neighbours in the order of their rank. Each caption word gets the chain of merges that builds it from
the left; where another word's merge would take a pair first, a closing merge joins the pieces (later merges never
change a word that earlier ones already join: BPE takes the lowest-ranked pair first).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from ..tiny import bytes_to_unicode
from . import world

SPECIAL = ["<|startoftext|>", "<|endoftext|>"]
MAX_LENGTH = 32    # the longest caption is under 20 tokens; longer prompts are cut as CLIP cuts at 77


def caption_words() -> list[str]:
    """Every word the world's captions use (with plurals), in a fixed order."""
    words = {"a", "an", "the", "of", "and", "at", "in", "on", "to", "near", "picture", "image", "corner", "middle",
             "background", "above", "below", "shape", "shapes", "sks"}
    words |= set(world.BACKGROUNDS) | set(world.SIZES) | set(world.NUMBERS.values())
    words |= {w for p in world.POSITIONS + tuple(world.RELATION_WORDS.values()) for w in p.split()}
    words |= set(world.ALL_SHAPES) | {s + "s" for s in world.ALL_SHAPES}
    return sorted(words)


def _bpe_pieces(word: str, ranks: dict) -> list[str]:
    """CLIP's BPE on one lower-case ASCII word, with these merge ranks."""
    pieces = list(word[:-1]) + [word[-1] + "</w>"]
    while len(pieces) > 1:
        pairs = [(ranks.get((a, b), float("inf")), i) for i, (a, b) in enumerate(zip(pieces, pieces[1:]))]
        rank, i = min(pairs)
        if rank == float("inf"):
            break
        pieces[i:i + 2] = [pieces[i] + pieces[i + 1]]
    return pieces


def write_tokenizer(folder, words=None) -> Path:
    """vocab.json and merges.txt for CLIPTokenizer: the 514 byte tokens, then one token per word."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    words = caption_words() if words is None else sorted(words)
    for w in words:
        if not re.fullmatch(r"[a-z]+", w):
            raise ValueError(f"words: {w!r} is not a lower-case ASCII word")
    symbols = list(bytes_to_unicode().values())
    vocab = symbols + [s + "</w>" for s in symbols]
    known, merges, ranks = set(vocab), [], {}

    def merge(a: str, b: str) -> None:
        if (a, b) not in ranks:
            ranks[(a, b)] = len(merges)
            merges.append((a, b))
        if a + b not in known:
            known.add(a + b)
            vocab.append(a + b)

    for w in words:                      # the chain that builds each word from the left
        pieces = list(w[:-1]) + [w[-1] + "</w>"]
        while len(pieces) > 1:
            merge(pieces[0], pieces[1])
            pieces = [pieces[0] + pieces[1]] + pieces[2:]
    for _ in range(10):                  # closing merges where another word's merge took a pair first
        broken = [w for w in words if len(_bpe_pieces(w, ranks)) > 1]
        if not broken:
            break
        for w in broken:
            pieces = _bpe_pieces(w, ranks)
            while len(pieces) > 1:
                merge(pieces[0], pieces[1])
                pieces = [pieces[0] + pieces[1]] + pieces[2:]
    vocab += SPECIAL
    (folder / "vocab.json").write_text(json.dumps({tok: i for i, tok in enumerate(vocab)}))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges))
    return folder


def load_tokenizer(folder):
    from transformers import CLIPTokenizer

    return CLIPTokenizer(str(Path(folder) / "vocab.json"), str(Path(folder) / "merges.txt"),
                         model_max_length=MAX_LENGTH)
