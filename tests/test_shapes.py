"""The shapes world and its judge: fixed rules, deterministic items, and a judge validated on clean renders."""

import dataclasses

import numpy as np
import pytest

from difflab.shapes import judge, world


@pytest.fixture(scope="module")
def items():
    return [world.item(i, "train") for i in range(600)] + [world.item(i, "val", world.ALL_SHAPES) for i in range(400)]


def test_items_are_deterministic_and_differ_from_each_other():
    a, scene_a = world.item(7, "train")
    b, scene_b = world.item(7, "train")
    assert np.array_equal(np.asarray(a), np.asarray(b)) and scene_a.prompt.text == scene_b.prompt.text
    assert all(np.array_equal(m, n) for m, n in zip(scene_a.masks, scene_b.masks))
    assert not np.array_equal(np.asarray(a), np.asarray(world.item(8, "train")[0]))
    assert not np.array_equal(np.asarray(a), np.asarray(world.item(7, "val")[0]))
    with pytest.raises(ValueError, match="split: 'dev' is not known"):
        world.item(0, "dev")


def test_the_world_keeps_its_rules(items):
    categories = set()
    for image, scene in items:
        pixels = np.asarray(image)
        assert pixels.shape == (64, 64, 3)
        assert scene.background not in {o.colour for o in scene.objects}
        assert tuple(pixels[0, 0]) == world.BACKGROUNDS[scene.background] or scene.objects[0].box[0] < 1
        for obj, mask in zip(scene.objects, scene.masks):
            exact = (pixels[mask] == world.COLOURS[obj.colour]).all(-1)
            assert exact.mean() >= 0.5  # flat colour, exactly the palette's (small stars are mostly edge)
            assert obj.position == world.cell_of(obj.cx, obj.cy)
        for i, m in enumerate(scene.masks):  # objects never touch
            for n in scene.masks[i + 1:]:
                assert not (m & n).any()
        categories.add(scene.prompt.category)
    assert categories == set(world.CATEGORIES)


def test_held_out_combinations_and_new_shapes_never_train():
    seen = set()
    for i in range(2000):
        _, scene = world.item(i, "train")
        for obj in scene.objects:
            assert (obj.colour, obj.shape, obj.position) not in world.HELD_OUT
            assert obj.shape in world.SHAPES
            seen.add(obj.shape)
    assert seen == set(world.SHAPES)


def test_a_large_object_has_at_least_twice_the_area_of_a_small_one(items):
    areas = {}
    for _, scene in items:
        for obj, mask in zip(scene.objects, scene.masks):
            areas.setdefault((obj.shape, obj.size), []).append(mask.sum())
    for shape in world.ALL_SHAPES:
        assert min(areas[(shape, "large")]) >= 2 * max(areas[(shape, "small")]), shape


def test_the_judge_reads_every_attribute_of_clean_renders(items):
    images, scenes = zip(*items)
    accuracy = judge.attribute_accuracy(images, scenes)
    assert accuracy["n"] > 1400
    for key in ("colour", "shape", "size", "position", "count", "background"):
        assert accuracy[key] >= 0.99, (key, accuracy)


def test_every_caption_is_met_by_its_image_and_a_changed_caption_is_not(items):
    for image, scene in items[:300]:
        assert judge.judge(image, scene.prompt)["correct"], scene.prompt.text
    image, scene = next((im, s) for im, s in items if s.prompt.category == "color_attr"
                        and s.prompt.things[0].shape != s.prompt.things[1].shape)
    a, b = scene.prompt.things
    swapped = dataclasses.replace(scene.prompt, things=[dataclasses.replace(a, colour=b.colour),
                                                        dataclasses.replace(b, colour=a.colour)])
    assert not judge.judge(image, swapped)["correct"]
    image, scene = next((im, s) for im, s in items if s.prompt.category == "counting")
    more = dataclasses.replace(scene.prompt.things[0], count=scene.prompt.things[0].count % 3 + 1)
    assert "count" in judge.judge(image, dataclasses.replace(scene.prompt, things=[more]))["reasons"][0]
    image, scene = next((im, s) for im, s in items if s.prompt.category == "relative_position")
    opposite = {"left of": "right of", "right of": "left of", "above": "below", "below": "above"}
    flipped = dataclasses.replace(scene.prompt, relation=opposite[scene.prompt.relation])
    assert judge.judge(image, flipped)["reasons"] == [f"relation: not {flipped.relation}"]


def test_make_scene_draws_any_prompt_including_held_out_and_new_shapes():
    prompt = world.Prompt("a purple triangle at the top left", "position",
                          [world.Thing("triangle", "purple", None, "top left")])
    image, scene = world.make_scene(prompt, seed=3)
    assert judge.judge(image, prompt)["correct"]
    hearts = world.Prompt("two red hearts", "counting", [world.Thing("heart", "red", count=2)])
    image, _ = world.make_scene(hearts, seed=1)
    assert judge.judge(image, hearts)["correct"]


def test_parse_reads_back_every_caption_and_rejects_other_text(items):
    for _, scene in items:
        parsed, want = world.parse(scene.prompt.text), scene.prompt
        assert (parsed.category, parsed.relation, parsed.background) == (want.category, want.relation, want.background)
        assert parsed.things in (want.things, want.things[::-1])   # "a and b" may be worded "b and a"
    assert world.parse("Two yellow squares").things == [world.Thing("square", "yellow", count=2)]
    assert world.parse("a red heart in the middle").things == [world.Thing("heart", "red", position="center")]
    with pytest.raises(ValueError, match="prompt: 'a cat' is not in the shapes world's wording"):
        world.parse("a cat")


def test_a_shapes_image_spec_renders_its_prompt(tmp_path, monkeypatch):
    from PIL import Image

    from difflab import InputError, samples

    monkeypatch.setenv("DIFFLAB_CACHE", str(tmp_path))
    path = samples.input_path("shapes:a red circle at the top left:3")
    assert path == samples.input_path("shapes:a red circle at the top left:3")     # cached, same file
    assert judge.judge(Image.open(path), world.parse("a red circle at the top left"))["correct"]
    with pytest.raises(InputError, match="image: prompt: 'a dog' is not in the shapes world's wording"):
        samples.input_path("shapes:a dog")
    with pytest.raises(InputError, match="use shapes:PROMPT"):
        samples.input_path("shapes:a red circle:x")
