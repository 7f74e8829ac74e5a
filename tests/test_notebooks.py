"""The notebooks: committed clean and thin, and every one executed through papermill offline (quick)."""

import json
from html import escape
import re
from pathlib import Path

import pytest
from PIL import Image

import difflab
from difflab import InputError, notebooks
from difflab.cli import main

OFFLINE = "configs/notebooks/offline.yaml"
QUICK = "configs/notebooks/quick.yaml"
ATTENTION_RATIO = 2.0
NAMES = ["01_text_to_image", "02_inpainting", "03_image_to_image", "04_ddpm_from_scratch",
         "05_inside_stable_diffusion", "06_latent_diffusion_from_scratch", "07_fine_tuning", "08_controlnet"]


@pytest.mark.parametrize("path", notebooks.available(), ids=lambda p: p.stem)
def test_notebooks_are_committed_clean_and_thin(path):
    nb = json.loads(path.read_text())
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert nb["cells"][0]["cell_type"] == "markdown" and "".join(nb["cells"][0]["source"]).startswith("# ")
    assert not any(c["outputs"] or c["execution_count"] for c in code)
    tagged = [c for c in code if "parameters" in c["metadata"].get("tags", [])]
    assert len(tagged) == 1
    declared = notebooks.declared(path)
    assert "out" in declared and declared["out"]["default"] == "None"
    source = "\n".join("".join(c["source"]) for c in code)
    assert not re.search(r"^\s*(def|class)\s", source, re.M)
    assert "quick" not in source  # quick values live in configs/notebooks/quick.yaml, not in the cells
    colab = "".join(code[0]["source"])
    assert 'if "google.colab" in sys.modules' in colab  # installs only in Colab
    assert colab.count("github.com") == 1 and "DIFFLAB_REPO" in colab and "raise SystemExit" in colab
    assert nb["metadata"]["kernelspec"]["name"] == "python3"  # the environment's own kernel
    assert "notebooks.record(" in "".join(code[-1]["source"])              # the last cell records


def test_select_and_parameter_errors():
    assert [p.stem for p in notebooks.select()] == NAMES
    assert [p.stem for p in notebooks.select(["03", "01_text_to_image"])] == [NAMES[2], NAMES[0]]
    with pytest.raises(InputError, match="notebook: '09' is not known; choose from 01_text_to_image"):
        notebooks.select(["09"])
    with pytest.raises(InputError, match="set: 'stepz' is not a parameter of the chosen notebooks"):
        notebooks.run(["01"], OFFLINE, ["stepz=3"])
    params = notebooks.load_params(OFFLINE, ["train_steps=5", "model=tiny"])
    shares = notebooks.shares(notebooks.select(["01", "04"]), params)
    assert shares[notebooks.select(["01"])[0]] == {"model": "tiny", "device": "cpu", "dtype": "float32"}
    assert shares[notebooks.select(["04"])[0]]["train_steps"] == 5
    chosen = notebooks.select(["01", "02", "03", "04"])
    quick = notebooks.shares(chosen, notebooks.load_params([OFFLINE, QUICK]))
    assert quick[chosen[0]]["steps"] == 8 and quick[chosen[3]]["train_steps"] == 100
    assert quick[chosen[0]]["model"] == "shapes-quick"  # the later file overrides key by key
    assert quick[chosen[1]]["strengths"] == [0.5, 1.0] and quick[chosen[2]]["strengths"] == [0.2, 1.0]  # 03's own
    gpu = notebooks.shares(chosen, notebooks.load_params("configs/notebooks/gpu.yaml", ["prompt=a cat"]))
    assert gpu[chosen[1]]["source"] == "sample:china:512" and gpu[chosen[1]]["prompt"] == "a cat"  # --set wins


def test_notebooks_cli_bad_input_is_one_line_and_exit_2(tmp_path, capsys):
    assert main(["notebooks", "run", "nope", "--out", str(tmp_path)]) == 2
    assert main(["notebooks", "run", "--params", str(tmp_path / "missing.yaml"), "--out", str(tmp_path)]) == 2
    (tmp_path / "p.yaml").write_text("parameterz: {}\n")
    assert main(["notebooks", "run", "--params", str(tmp_path / "p.yaml"), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and "notebook: 'nope'" in err[0] and "missing.yaml" in err[1] and "parameterz" in err[2]
    assert list(tmp_path.iterdir()) == [tmp_path / "p.yaml"]  # nothing written


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    """Every notebook, offline parameters, quick: the way `difflab notebooks run` runs them."""
    out = tmp_path_factory.mktemp("notebooks")
    run_dir, results = notebooks.run(params_file=[OFFLINE, QUICK], out=out, progress=False)
    return run_dir, {r.name: r for r in results}


def _artifacts(result):
    return {a["caption"]: Path(a["path"]) for a in result.artifacts}


def test_every_notebook_runs_offline_and_records_what_it_made(executed):
    run_dir, results = executed
    assert list(results) == NAMES
    assert {n: r.status for n, r in results.items()} == {n: "ok" for n in NAMES}, [r.error for r in results.values()]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert [r["name"] for r in summary["results"]] == NAMES and summary["parameters"]["train_steps"] == 100
    assert re.search(r"^01_text_to_image +ok +\d", (run_dir / "summary.txt").read_text(), re.M)
    for result in results.values():
        executed_nb = json.loads(Path(result.notebook).read_text())
        injected = [c for c in executed_nb["cells"] if "injected-parameters" in c["metadata"].get("tags", [])]
        assert injected and "out = " in "".join(injected[0]["source"])
        assert any(c.get("outputs") for c in executed_nb["cells"] if c["cell_type"] == "code")
        assert len(result.artifacts) >= 3
        for caption, path in _artifacts(result).items():
            assert path.exists() and str(path).startswith(str(run_dir)), caption
            if path.suffix in (".png", ".gif"):
                with Image.open(path) as im:
                    assert im.width >= 64 and im.height >= 64, caption


def test_sweeps_made_by_notebooks_hold_images_with_metadata(executed):
    _, results = executed
    sweeps = [p for r in results.values() for p in _artifacts(r).values() if p.is_dir() and (p / "sweep.yaml").exists()]
    assert len(sweeps) == 3
    for folder in sweeps:
        run = difflab.SweepRun(folder)
        assert run.complete and not run.failed
        for entry in run.images:
            meta = difflab.read_metadata(entry["path"])
            record = meta["difflab"]
            assert meta["parameters"].startswith(record["prompt"])
            assert record["seed"] == entry["seed"] and record["model"]["name"] == "shapes-quick"


def test_notebook_figures_are_in_range(executed):
    _, results = executed
    assert results["02_inpainting"].numbers["unmasked_pixels_unchanged"] is True
    ddpm = results["04_ddpm_from_scratch"].numbers
    assert ddpm["train_steps"] == 100 and ddpm["last_loss"] < 0.6 * ddpm["first_loss"]
    assert ddpm["alpha_bar_T"] < 1e-3
    gif = _artifacts(results["04_ddpm_from_scratch"])["DDIM sampling, step by step"]
    assert Image.open(gif).n_frames == 50
    inside = results["05_inside_stable_diffusion"].numbers
    kept = set(range(0, 8, 2)) | {7}  # every 2nd of 8 steps, and the last
    assert inside["trajectory_frames"] == len(kept) and inside["attention_map_size"] == [8, 8]
    assert inside["tokens"] == len("a red circle and a blue square".split())  # every word one token
    side_by_side = _artifacts(results["05_inside_stable_diffusion"])["Trajectories under each guidance scale, side by side"]
    assert Image.open(side_by_side).n_frames == inside["trajectory_frames"]
    assert results["03_image_to_image"].numbers["input_seen_at_lowest_strength"] is True   # strength 0.2: the input
    scratch = results["06_latent_diffusion_from_scratch"].numbers
    assert scratch["vae_judge"]["colour"] > 0.8 and scratch["vae_judge"]["position"] > 0.8
    assert set(scratch["overall_by_guidance"]) == {"1.0", "7.5"}
    trained = _artifacts(results["06_latent_diffusion_from_scratch"])["The trained model (a diffusers folder)"]
    for stage in ("vae", "unet"):   # reuse_cached: shapes-quick's own runs, copied with it, not a second training
        config = (trained / "training" / stage / "config.yaml").read_text()
        assert f"shapes-{stage}-quick" in config and (trained / "training" / stage / "metrics.jsonl").stat().st_size
    tuning = results["07_fine_tuning"].numbers
    assert set(tuning["heart_by_lora_scale"]) == {"0.0", "1.0"} and set(tuning["measured"]) == {"base", "prior", "no prior"}
    assert tuning["heart_by_lora_scale"]["0.0"] == tuning["measured"]["base"]["shape"]   # scale 0 is the base model
    assert all(m["images"] == 4 and 0 <= m["overall"] <= 1 for m in tuning["measured"].values())
    control = results["08_controlnet"].numbers
    assert set(control["iou_over_steps"]) == {"2", "4"} and all(0 <= v <= 1 for v in control["iou_over_steps"].values())
    assert set(control["fidelity"]) == {"with the outline", "caption only"}
    assert all(f["items"] == 2 and 0 <= f["iou_median"] <= 1 for f in control["fidelity"].values())
    assert all(0 <= control[k] <= 1 for k in ("mask_from_words_iou", "mask_as_found_iou", "mask_strongest_iou"))


@pytest.mark.slow
def test_on_the_default_model_a_colour_word_attends_to_its_object(tmp_path):
    """Notebook 05 on `shapes` (trained first when not cached): each colour word of the prompt puts a share of its
    cross-attention inside its object's mask well above the mask's share of the image (1x: spread evenly)."""
    _, (result,) = notebooks.run(["05"], params_file=OFFLINE, out=tmp_path, progress=False)
    assert result.status == "ok", result.error
    ratios = {k: v for k, v in result.numbers["attention_inside_over_area"].items()
              if k.split(" -> ")[0] in ("red", "blue")}
    assert ratios and all(r > ATTENTION_RATIO for r in ratios.values()), result.numbers


@pytest.mark.slow
def test_on_the_default_model_img2img_turns_the_input_into_the_prompt(tmp_path):
    """Notebook 03 on `shapes`: the judge sees the input's red circle at strength 0.2 and the prompt's blue square
    at strength 1.0."""
    _, (result,) = notebooks.run(["03"], params_file=OFFLINE, out=tmp_path, progress=False)
    assert result.status == "ok", result.error
    numbers = result.numbers
    assert numbers["input_seen_at_lowest_strength"] and numbers["prompt_seen_at_highest_strength"], numbers


def test_a_failing_notebook_is_reported_and_the_rest_still_run(tmp_path, capsys):
    code = main(["notebooks", "run", "03", "05", "--params", OFFLINE, "--params", QUICK, "--set", "source=no.png",
                 "--out", str(tmp_path)])
    assert code == 1
    out = capsys.readouterr().out
    (run_dir,) = tmp_path.iterdir()
    summary = {r["name"]: r for r in json.loads((run_dir / "summary.json").read_text())["results"]}
    assert summary["03_image_to_image"]["status"] == "failed"
    assert re.match(r"cell \d+: \w+Error: ", summary["03_image_to_image"]["error"])
    assert summary["05_inside_stable_diffusion"]["status"] == "ok"  # it takes no `source`: ran as usual
    assert "03_image_to_image" in out and "failed" in out
    assert (run_dir / "03_image_to_image.ipynb").exists()  # the executed copy shows the error in place


def test_the_tour_page_links_every_notebook_artifact_and_sweep(executed, tmp_path, monkeypatch):
    run_dir, results = executed
    monkeypatch.setattr(notebooks, "run", lambda **kw: (run_dir, list(results.values())))
    params = tmp_path / "tour.yaml"
    params.write_text("parameters: {steps: 8}\nsweeps:\n  guidance.yaml: [model=tiny, 'x.values=[1.0, 7.5]', "
                      "'y.values=[1]', params.num_inference_steps=2]\n")
    from difflab.demo import run_tour

    page = run_tour(str(params), tmp_path / "results")
    html = page.read_text()
    links = [link for link in re.findall(r"(?:href|src)='([^']+)'", html) if not link.startswith("#")]
    missing = [link for link in links if not (page.parent / link).exists()]
    assert links and not missing, missing
    assert {f"#{r.name}" for r in results.values()} <= set(re.findall(r"href='(#[^']+)'", html))
    for result in results.values():
        assert f"id='{result.name}'" in html
        assert all(escape(a["caption"], quote=True) in html for a in result.artifacts)
    assert "CFG scale against seed" in html  # the sweep config's first comment line says what it shows
    (sweep,) = (page.parent / "sweeps").iterdir()
    assert (sweep / "grid.png").exists() and difflab.SweepRun(sweep).complete

    params.write_text("sweeps: {nope.yaml: []}\n")
    with pytest.raises(InputError, match="sweeps: 'nope.yaml'"):
        run_tour(str(params), tmp_path / "results2")
    assert not (tmp_path / "results2").exists()
