"""The web UI: its API through gradio_client against a real server on a free local port, and a real browser."""

import json
import socket
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

import difflab
from helpers import pixels
from difflab.cli import main

gradio_client = pytest.importorskip("gradio_client")
CHROMIUM = "/usr/bin/chromium"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory, difflab_cache):
    from difflab.app import launch

    results = tmp_path_factory.mktemp("app") / "results"
    port = free_port()
    page = launch("tiny", port=port, results=results, block=False)
    client = gradio_client.Client(f"http://127.0.0.1:{port}/", verbose=False)
    yield {"url": f"http://127.0.0.1:{port}/", "results": results, "client": client, "page": page}
    page.close()


def text2img(client, prompt, steps=3, seed=5, n=1, width=0, height=0, scheduler="default"):
    return client.predict(prompt, "", steps, 7.5, width, height, seed, n, scheduler, api_name="/text2img")


def runs_in(results: Path) -> set:
    return {p.name for p in results.iterdir()} if results.exists() else set()


def test_binds_localhost_without_share_by_default(server):
    page = server["page"]
    assert page.server_name == "127.0.0.1" and not page.share
    from difflab.cli import build_parser
    args = build_parser().parse_args(["app"])
    assert (args.host, args.port, args.share) == ("127.0.0.1", 7860, False)


def test_text2img_batch_of_prompts_writes_images_with_the_cli_metadata(server):
    preview, gallery, status, details = text2img(server["client"], "a red fox\na blue bird", n=2)
    assert details["status"] == "complete" and status.startswith("Done: 4 image(s)")
    files = [Path(f) for f in details["files"]]
    assert [f.name for f in files] == ["0000-5.png", "0001-6.png", "0002-5.png", "0003-6.png"]
    records = [difflab.read_metadata(f)["difflab"] for f in files]
    assert [r["prompt"] for r in records] == ["a red fox"] * 2 + ["a blue bird"] * 2
    assert [r["seed"] for r in records] == [5, 6, 5, 6]
    run = json.loads((files[0].parent / "run.json").read_text())
    assert run["status"] == "complete" and run["command"] == ["difflab", "app"] and run["prompts"] == [
        "a red fox", "a blue bird"]
    # the very pixels the library (and so the CLI) makes for this request
    sd = difflab.load("tiny", progress=False)
    same = difflab.generate(sd, prompt="a blue bird", seed=5, num_images=2, num_inference_steps=3)[1]
    assert (pixels(same.image) == pixels(Image.open(files[3]))).all()
    assert len(gallery) == 4 and preview is not None


@pytest.mark.parametrize("call, message", [
    (lambda c: text2img(c, "x", width=100), "width: 100 is not allowed; use a positive multiple of 8"),
    (lambda c: text2img(c, "x", seed=-7), "seed: -7"),
    (lambda c: c.predict("x", "", 3, 7.5, 1, 1, "default", 0.5, None, api_name="/img2img"), "image: give an input image"),
    (lambda c: c.predict("x", "", 3, 7.5, 1, 1, "default", 1.0, None, "", 0, True, api_name="/inpaint"),
     "image: give an image to inpaint"),
    (lambda c: c.predict("x", "", 3, 7.5, 1, 1, "default", 1.0, None, "0.1,0.1,2", 0, True, api_name="/inpaint"),
     "boxes"),
    (lambda c: c.predict("x", "", 3, 7.5, 1, "default", "guidance_scale", "1, 2", "nope", "1", api_name="/sweep"),
     "nope"),
])
def test_bad_input_is_a_clear_message_and_writes_nothing(server, call, message):
    before = runs_in(server["results"])
    with pytest.raises(gradio_client.exceptions.AppError) as info:
        call(server["client"])
    assert message in str(info.value) and "Traceback" not in str(info.value)
    assert runs_in(server["results"]) == before


def test_img2img_and_inpaint_with_a_painted_mask(server, photo_file, tmp_path):
    from gradio_client import handle_file

    client = server["client"]
    *_, details = client.predict("a temple in snow", "", 4, 7.5, 3, 1, "default", 0.6, handle_file(str(photo_file)),
                                 api_name="/img2img")
    record = difflab.read_metadata(details["files"][0])["difflab"]
    assert record["task"] == "img2img" and record["strength"] == 0.6

    # a layer painted over the lower-right quarter is the mask; boxes add to it
    layer = Image.new("RGBA", (64, 64), (0, 0, 0, 0))
    layer.paste((255, 0, 0, 255), (32, 32, 64, 64))
    layer.save(tmp_path / "layer.png")
    editor = {"background": handle_file(str(photo_file)), "layers": [handle_file(str(tmp_path / "layer.png"))],
              "composite": None}
    *_, details = client.predict("a realistic green dragon", "cartoon", 4, 7.5, 5, 1, "default", 1.0, editor,
                                 "0,0,8,8", 0, True, api_name="/inpaint")
    out = Path(details["files"][0])
    mask = np.asarray(Image.open(out.parent / "mask.png")) > 0
    assert mask[40, 40] and mask[2, 2] and not mask[20, 20] and mask.sum() == 32 * 32 + 8 * 8
    original, made = pixels(Image.open(photo_file).convert("RGB")), pixels(Image.open(out))
    assert (made[~mask] == original[~mask]).all() and (made[mask] != original[mask]).any()


def test_one_job_at_a_time_and_cancel_stops_within_a_step(server):
    from gradio_client.utils import Status

    client, results = server["client"], server["results"]
    before = runs_in(results)
    long = client.submit("a very long job", "", 150, 7.5, 0, 0, 1, 1, "default", api_name="/text2img")
    deadline = time.time() + 60
    while len(long.outputs()) < 2 and time.time() < deadline:  # previews are streaming: it is running
        time.sleep(0.05)
    assert len(long.outputs()) >= 2 and long.outputs()[-1][2].startswith("Step ")
    short = client.submit("a short job", "", 2, 7.5, 0, 0, 1, 1, "default", api_name="/text2img")
    time.sleep(0.5)
    assert short.status().code in (Status.IN_QUEUE, Status.STARTING, Status.JOINING_QUEUE)  # waits its turn
    client.predict(api_name="/cancel_text2img")
    *_, details = short.result(timeout=300)  # the device was freed: the queued job ran to completion
    assert details["status"] == "complete" and len(details["files"]) == 1
    steps = [int(o[2].split()[1].split("/")[0]) for o in long.outputs() if o and o[2].startswith("Step ")]
    assert steps == sorted(steps) and steps[-1] < 150  # cancelled part-way: it never reached its last step
    made = runs_in(results) - before
    assert len(made) == 1 and "a-short-job" in made.pop()  # the cancelled job saved nothing


def test_sweep_tab_makes_a_labelled_grid(server):
    grid, status = server["client"].predict("a lighthouse", "", 2, 7.5, 1, "default", "guidance_scale", "1, 7.5",
                                            "seed", "1, 2", api_name="/sweep")
    assert status.startswith("Done: 4 images, 0 failed")
    run_dir = Path(status.split("`")[1]).parent
    run = difflab.SweepRun(run_dir)
    assert run.complete and len(run.images) == 4
    assert Image.open(grid).size == Image.open(run.grid_paths()[0]).size


def test_gallery_lists_results_and_reuses_parameters(server):
    from difflab.app import reused_fields

    *_, details = text2img(server["client"], "reuse me", steps=2, seed=77)
    listed = server["client"].predict(api_name="/gallery")
    names = [Path(item["image"]).name for item in listed]
    assert names[0] == Path(details["files"][0]).name  # newest first
    assert not any(n.startswith(("grid", "mask")) for n in names)
    assert reused_fields(details["files"][0]) == ("reuse me", "", 2, 7.5, 64, 64, 77, 1, "default")
    with pytest.raises(difflab.InputError, match="no difflab parameters"):
        plain = server["results"] / "plain.png"
        Image.new("RGB", (8, 8)).save(plain)
        reused_fields(plain)


def test_only_results_and_assets_are_served(server):
    *_, details = text2img(server["client"], "served", steps=2)
    base = server["url"] + "gradio_api/file="
    inside = details["files"][0]
    assert httpx.get(base + inside).status_code == 200
    repo_file = str(Path(__file__).resolve().parents[1] / "pyproject.toml")
    for path in ("/etc/passwd", repo_file, f"{server['results']}/../../{Path(repo_file).name}",
                 str(Path(difflab.__file__).resolve())):
        assert httpx.get(base + path).status_code in (403, 404), path
    assert httpx.get(server["url"]).status_code == 200  # the page and its own assets


def test_app_cli_bad_input_exits_2(capsys):
    assert main(["app", "--port", "0"]) == 2
    assert main(["app", "--model", "no/such-model-offline"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and err[0].startswith("difflab app: error: port: 0")


PROMPT = "a red circle to the left of a blue square"


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium at /usr/bin/chromium "
                                                        "(make test installs it with apt-get)")
def test_end_to_end_in_a_real_browser(server, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                    args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(server["url"])
        page.locator("#text2img-prompt textarea").fill(PROMPT)
        page.locator("#text2img-generate").click()
        expect(page.locator("#text2img-status")).to_contain_text("Done: 1 image", timeout=90_000)
        expect(page.locator("#text2img-gallery img").first).to_be_visible(timeout=30_000)
        page.screenshot(path=str(tmp_path / "app.png"), full_page=True)
        browser.close()
    assert Image.open(tmp_path / "app.png").size[0] >= 1400
    made = [p for p in server["results"].glob("*/*.png")
            if (difflab.read_metadata(p)["difflab"] or {}).get("prompt") == PROMPT]
    assert len(made) == 1
    assert "Steps: 30" in difflab.read_metadata(made[0])["parameters"]


def test_controlnet_tab_takes_a_control_image_and_mask_from_words(tmp_path, difflab_cache, photo_file):
    """`difflab app --controlnet`: text2img takes a control image (resized when the box says so, preprocessed as
    chosen), and the same image as the CLI would make; inpaint takes a mask from words."""
    from gradio_client import handle_file

    from difflab.app import launch
    from difflab.control import preprocess

    port = free_port()
    page = launch("tiny", port=port, results=tmp_path / "res", block=False, controlnet=["tiny-controlnet"])
    try:
        client = gradio_client.Client(f"http://127.0.0.1:{port}/", verbose=False)
        big = tmp_path / "control.png"
        Image.open(photo_file).resize((96, 96)).save(big)
        *_, details = client.predict("a circle", "", 3, 7.5, 0, 0, 4, 1, "default", handle_file(str(big)), "canny",
                                     True, 0.5, 0.0, 1.0, api_name="/text2img")
        out = Path(details["files"][0])
        record = difflab.read_metadata(out)["difflab"]
        assert record["controlnet_conditioning_scale"] == 0.5 and record["control_preprocess"] == "canny"
        shown = Image.open(out.parent / "control_0.png")
        assert shown.size == (64, 64)
        expected = preprocess(Image.open(big).convert("RGB").resize((64, 64), Image.LANCZOS), "canny")
        assert (pixels(shown) == pixels(expected)).all()
        *_, details = client.predict("a blue square", "", 3, 7.5, 4, 1, "default", 1.0,
                                     {"background": handle_file(str(photo_file)), "layers": [], "composite": None},
                                     "", 0, True, "red circle", 2.0, "none", handle_file(str(big)), "none", True,
                                     1.0, 0.0, 1.0, api_name="/inpaint")
        record = difflab.read_metadata(details["files"][0])["difflab"]
        assert record["mask_from"] == "red circle" and record["mask_threshold"] == 2.0 and record["mask_refine"] == "none"
        assert (Path(details["files"][0]).parent / "mask.png").is_file()
    finally:
        page.close()
