import numpy as np
import pytest
from PIL import Image

from difflab import InputError, GenerationParams
from difflab.inputs import prepare
from difflab.masks import box_to_pixels, feather, make_mask, overlay, parse_box, paste_back


def test_parse_box_pixels_and_fractions():
    assert parse_box("10,20,110,80") == (10, 20, 110, 80)
    assert parse_box("0.25, 0.5, 0.75, 1.0") == (0.25, 0.5, 0.75, 1.0)
    for bad in ("10,20,30", "a,b,c,d", "1,2,3,4,5"):
        with pytest.raises(InputError, match="box"):
            parse_box(bad)


def test_box_to_pixels_fractions_scale_with_size():
    assert box_to_pixels((0.25, 0.5, 0.75, 1.0), (64, 32)) == (16, 16, 48, 32)
    assert box_to_pixels((8, 8, 24, 16), (64, 32)) == (8, 8, 24, 16)


@pytest.mark.parametrize("box", [(0, 0, 65, 10), (10, 10, 10, 20), (20, 10, 10, 30), (-1, 0, 5, 5),
                                 (0.5, 0.5, 1.5, 1.0)])
def test_box_outside_or_empty_is_refused(box):
    with pytest.raises(InputError, match=r"box: .*64x64"):
        box_to_pixels(box, (64, 64))


def test_box_mask_covers_exactly_the_box():
    mask = np.asarray(make_mask((64, 48), boxes=[(8, 4, 24, 20)]))
    assert mask.dtype == np.uint8 and mask.shape == (48, 64)
    assert (mask[4:20, 8:24] == 255).all()
    assert mask.sum() == 16 * 16 * 255


def test_fraction_box_and_union_with_ellipse():
    mask = np.asarray(make_mask((64, 64), boxes=[(0.0, 0.0, 0.25, 0.25)], ellipses=[(32, 32, 64, 64)]))
    assert (mask[:16, :16] == 255).all() and mask[:16, 16:32].max() == 0
    ellipse = mask[32:, 32:] == 255
    assert ellipse[16, 16] and not ellipse[0, 0]  # centre in, corner out
    assert abs(ellipse.sum() - np.pi * 16 * 16) < 40  # area of a circle of radius 16


def test_dilation_grows_by_n_pixels():
    mask = np.asarray(make_mask((64, 64), boxes=[(20, 20, 30, 30)], dilate=3))
    assert (mask[17:33, 17:33] == 255).all()
    assert mask.sum() == 16 * 16 * 255


def test_mask_image_is_thresholded_and_checked():
    grey = Image.new("L", (64, 64), 100)
    grey.paste(200, (0, 0, 32, 64))
    mask = np.asarray(make_mask((64, 64), mask_image=grey))
    assert set(np.unique(mask)) == {0, 255} and (mask[:, :32] == 255).all()
    with pytest.raises(InputError, match="mask_image: size 32x32 does not match the image size 64x64"):
        make_mask((64, 64), mask_image=Image.new("L", (32, 32), 255))
    with pytest.raises(InputError, match="mask is empty"):
        make_mask((64, 64), mask_image=Image.new("L", (64, 64), 0))


def test_feather_softens_edges_only():
    mask = make_mask((64, 64), boxes=[(16, 16, 48, 48)])
    soft = np.asarray(feather(mask, 3))
    assert soft[32, 32] == 255 and soft[0, 0] == 0
    assert 0 < soft[32, 16] < 255  # the edge is in between
    assert np.asarray(feather(mask, 0)).tolist() == np.asarray(mask).tolist()


def test_paste_back_keeps_unmasked_pixels_exactly(photo):
    mask = make_mask(photo.size, boxes=[(16, 16, 48, 48)])
    generated = Image.new("RGB", photo.size, (0, 255, 0))
    out = np.asarray(paste_back(generated, photo, mask))
    original = np.asarray(photo)
    assert (out[:16] == original[:16]).all() and (out[20:40, 20:40] == [0, 255, 0]).all()


def test_overlay_tints_only_the_mask(photo):
    mask = make_mask(photo.size, boxes=[(0, 0, 32, 64)])
    preview = np.asarray(overlay(photo, mask)).astype(int)
    original = np.asarray(photo).astype(int)
    assert (preview[:, 32:] == original[:, 32:]).all()
    assert (preview[:, :32, 0] >= original[:, :32, 0]).all() and (preview[:, :32] != original[:, :32]).any()


def test_prepare_checks_sizes_and_resizes_only_when_asked(photo):
    params = GenerationParams(task="inpaint", prompt="x", boxes=[(0, 0, 8, 8)])
    with pytest.raises(InputError, match="mask_image: size 32x32"):
        prepare(params, photo, Image.new("L", (32, 32), 255))
    params.resize_mask = True
    got = prepare(params, photo, Image.new("L", (32, 32), 255))
    assert got.mask.size == (64, 64)
    odd = photo.resize((60, 60))
    with pytest.raises(InputError, match="image: size 60x60 is not a multiple of 8"):
        prepare(GenerationParams(task="img2img", prompt="x"), odd)
    resized = prepare(GenerationParams(task="img2img", prompt="x", width=64, height=32), odd)
    assert resized.image.size == (64, 32)
