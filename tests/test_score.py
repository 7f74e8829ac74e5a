"""The prompt-following score: a fixed suite, judged per GenEval category; what a perfect drawer and noise get."""

import json

import pytest
from PIL import Image

from difflab.cli import main
from difflab.shapes import score, world


def test_the_suite_is_fixed_and_covers_every_category():
    a, b = score.suite(), score.suite()
    assert [e.prompt.text for v in a.values() for e in v] == [e.prompt.text for v in b.values() for e in v]
    assert set(a) == set(world.CATEGORIES) | {"held_out"}
    assert all(len(a[c]) == score.PROMPTS_PER_CATEGORY for c in world.CATEGORIES)
    for entry in a["held_out"]:
        (thing,) = entry.prompt.things
        assert (thing.colour, thing.shape, thing.position) in world.HELD_OUT
    assert {e.prompt.relation for e in a["relative_position"]} == set(world.RELATIONS)


def test_a_perfect_drawer_scores_one_and_a_wrong_one_scores_low():
    small = score.suite(prompts_per_category=3, seeds=(0, 1))
    perfect = score.score(score.world_drawer(), small, progress=False)
    assert perfect["overall"] == 1.0 and all(v == 1.0 for v in perfect["categories"].values())
    assert perfect["images"] == 2 * sum(len(v) for v in small.values())
    blank = score.score(lambda prompt, seeds: [world.render(world.Scene("gray", [], prompt)) for _ in seeds], small,
                        progress=False)
    assert blank["overall"] == 0.0
    assert "single_object" in score.table(perfect).splitlines()[0]
    assert perfect["attributes"] == {"colour": 1.0, "shape": 1.0, "position": 1.0, "number": 1.0}
    assert blank["attributes"] == {"colour": 0.0, "shape": 0.0, "position": 0.0, "number": 0.0}
    assert score.table(perfect).splitlines()[3].split() == ["attribute:", "colour", "shape", "position", "number"]


def test_the_attributes_say_which_requirement_a_drawer_misses():
    """A drawer that mirrors the right image left to right keeps every colour, shape and count but moves what is
    left or right: the score says position, and only position (and relations) fail."""
    small, right = score.suite(prompts_per_category=6, seeds=(0, 1)), score.world_drawer()

    def mirror(prompt, seeds):
        return [im.transpose(Image.Transpose.FLIP_LEFT_RIGHT) for im in right(prompt, seeds)]

    mirrored = score.score(mirror, small, progress=False)
    a = mirrored["attributes"]
    assert a["colour"] == a["shape"] == a["number"] == 1.0 and 0 < a["position"] < 0.8
    assert mirrored["categories"]["colors"] == 1.0 and mirrored["categories"]["position"] == a["position"] < 1
    assert mirrored["categories"]["relative_position"] < 1
    moved = next(d for d in mirrored["details"] if d["category"] == "position" and not d["correct"])
    assert moved["objects"] and moved["reasons"][0].startswith("missing")


def test_score_cli_scores_a_model_and_writes_json(tmp_path, capsys, difflab_cache):
    assert main(["score", "tiny", "--steps", "2", "--prompts-per-category", "1", "--out", str(tmp_path)]) == 0
    (run,) = tmp_path.iterdir()
    result = json.loads((run / "score.json").read_text())
    assert result["images"] == len(score.SEEDS) * (len(world.CATEGORIES) + len(world.HELD_OUT))
    assert result["overall"] <= 0.3  # random weights make noise, which follows no prompt
    assert result["params"] == {"num_inference_steps": 2, "guidance_scale": 4.0, "scheduler": "dpm++_2m_karras"}
    assert main(["score", "tiny", "--steps", "0", "--out", str(tmp_path / "x")]) == 2
    assert "num_inference_steps: 0" in capsys.readouterr().err and not (tmp_path / "x").exists()


@pytest.mark.parametrize("category", world.CATEGORIES)
def test_prompt_of_each_category_is_drawable(category):
    import random
    prompt = world.prompt_of(category, random.Random(1))
    image, _ = world.make_scene(prompt, 0)
    assert prompt.category == category and score.judge.judge(image, prompt)["correct"]
