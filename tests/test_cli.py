"""The command line: every bad input is one line, exit 2, nothing on disk, no heavy import; runs and Ctrl-C."""

import json
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from PIL import Image

import difflab
from difflab.cli import main

BAD_INPUTS = [
    (["generate", "--prompt", "x", "--width", "100"], "width: 100 is not allowed; use a positive multiple of 8"),
    (["generate", "--prompt", "x", "--height", "0"], "height: 0 is not allowed"),
    (["generate", "--prompt", "x", "--steps", "0"], "num_inference_steps: 0 is not allowed; use an integer >= 1"),
    (["img2img", "--prompt", "x", "--image", "{photo}", "--steps", "3", "--strength", "0.3"],
     "strength: 0.3 x num_inference_steps 3 runs int(0.9) = 0 denoising steps"),
    (["img2img", "--prompt", "x", "--image", "{photo}", "--strength", "0"], "strength: 0.0 is not allowed"),
    (["img2img", "--prompt", "x", "--image", "{photo}", "--strength", "1.5"], "use a number in (0, 1]"),
    (["generate", "--prompt", "x", "--guidance", "-1"], "guidance_scale: -1.0 is not allowed; use a number >= 0"),
    (["generate", "--prompt", "x", "--num-images", "0"], "num_images: 0 is not allowed"),
    (["generate", "--prompt", "x", "--seed", "-5"], "seed: -5 is not allowed"),
    (["img2img", "--prompt", "x", "--image", "{tmp}/missing.png"], "image: '{tmp}/missing.png' does not exist"),
    (["img2img", "--prompt", "x", "--image", "{tmp}/text.png"], "image: '{tmp}/text.png' is not a readable image"),
    (["img2img", "--prompt", "x", "--image", "{tmp}/truncated.png"], "is not a readable image"),
    (["inpaint", "--prompt", "x", "--image", "{photo}", "--mask", "{tmp}/small-mask.png"],
     "mask_image: size 32x32 does not match the image size 64x64"),
    (["inpaint", "--prompt", "x", "--image", "{photo}", "--box", "0,0,99,10"], "box: (0, 0, 99, 10) is empty or lies outside the 64x64 image"),
    (["inpaint", "--prompt", "x", "--image", "{photo}", "--box", "10,10,10,20"], "box: (10, 10, 10, 20) is empty"),
    (["inpaint", "--prompt", "x", "--image", "{photo}", "--box", "1,2,3"], "box: '1,2,3' is not allowed"),
    (["inpaint", "--prompt", "x", "--image", "{photo}"], "mask_image: inpaint needs a mask image, a box, an ellipse or --mask-from WORDS"),
    (["generate", "--prompt", "x", "--scheduler", "fancy"], "scheduler: 'fancy' is not known; choose one of ddim, ddpm"),
    (["generate", "--prompt", "x", "--model", "./no/such/model"], "model: './no/such/model' does not exist"),
    (["generate", "--prompt", "x", "--model", "someone/not-cached"], "model: hub id 'someone/not-cached' is not in the local"),
    (["generate", "--prompts-file", "{tmp}/none.txt"], "prompts_file: '{tmp}/none.txt' does not exist"),
    (["generate", "--steps", "3"], "prompt: missing; give --prompt TEXT or --prompts-file FILE"),
    (["generate", "--prompt", "x", "--device", "cpu", "--dtype", "float16"], "dtype: float16 is not supported on cpu"),
    (["generate", "--prompt", "x", "--steps", "many"], "argument --steps: invalid int value: 'many'"),
    (["generate", "--prompt", "x", "--lora-scale", "nan"], "lora_scale: nan is not allowed"),
]


@pytest.fixture
def bad_files(tmp_path, photo_file):
    (tmp_path / "text.png").write_text("not an image")
    Image.new("RGB", (64, 64)).save(tmp_path / "full.png")
    (tmp_path / "truncated.png").write_bytes((tmp_path / "full.png").read_bytes()[:60])
    Image.new("L", (32, 32), 255).save(tmp_path / "small-mask.png")
    return {"tmp": str(tmp_path), "photo": str(photo_file)}


def test_every_bad_input_is_one_line_exit_2_nothing_written_and_no_heavy_import(bad_files, tmp_path):
    cases = [([a.format(**bad_files) for a in argv], msg.format(**bad_files)) for argv, msg in BAD_INPUTS]
    out = tmp_path / "results"
    script = textwrap.dedent(f"""
        import contextlib, io, json, sys
        from difflab.cli import main
        report = []
        for argv, _ in {cases!r}:
            err = io.StringIO()
            with contextlib.redirect_stderr(err):
                try:
                    code = main(argv + ["--out", {str(out)!r}])
                except SystemExit as e:
                    code = e.code
            report.append((code, err.getvalue()))
        with contextlib.redirect_stdout(io.StringIO()):
            try:
                main(["--help"])
            except SystemExit:
                pass
        heavy = sorted(m for m in ("torch", "diffusers", "transformers") if m in sys.modules)
        print(json.dumps({{"report": report, "heavy": heavy}}))
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["heavy"] == [], "validation imported heavy modules"
    for (argv, message), (code, stderr) in zip(cases, result["report"]):
        assert code == 2, (argv, stderr)
        assert stderr.count("\n") == 1 and "Traceback" not in stderr, (argv, stderr)
        assert message in stderr, (argv, stderr)
    assert not out.exists() or not any(out.iterdir())


def test_console_script_exit_status_and_stderr(tmp_path):
    exe = Path(sys.executable).with_name("difflab")
    done = subprocess.run([str(exe), "generate", "--prompt", "x", "--steps", "0"], capture_output=True, text=True,
                          timeout=60, cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr == ("difflab generate: error: num_inference_steps: 0 is not allowed; "
                           "use an integer >= 1\n")
    assert not (tmp_path / "results").exists()
    assert subprocess.run([str(exe), "--help"], capture_output=True, timeout=60).returncode == 0


def test_generate_with_prompts_file_writes_a_run_folder(sd, tmp_path, capsys):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("# comment\na red fox\n\na blue bird\n")
    assert main(["generate", "--model", "tiny", "--prompts-file", str(prompts), "--num-images", "2", "--seed", "3",
                 "--steps", "2", "--out", str(tmp_path / "res")]) == 0
    (run,) = (tmp_path / "res").iterdir()
    assert run.name.endswith("-a-red-fox") and len(run.name.split("-")[0]) == 8
    names = sorted(p.name for p in run.glob("*.png"))
    assert names == ["0000-3.png", "0001-4.png", "0002-3.png", "0003-4.png"]
    info = json.loads((run / "run.json").read_text())
    assert info["status"] == "complete" and info["prompts"] == ["a red fox", "a blue bird"]
    assert difflab.read_metadata(run / "0002-3.png")["difflab"]["prompt"] == "a blue bird"
    assert str(run / "0000-3.png") in capsys.readouterr().out


def test_inpaint_cli_saves_mask_and_overlay(sd, tmp_path, photo_file):
    assert main(["inpaint", "--model", "tiny", "--image", str(photo_file), "--box", "0.25,0.25,0.75,0.75",
                 "--ellipse", "0,0,16,16", "--dilate", "1", "--keep-unmasked", "--prompt", "a realistic green dragon",
                 "--negative-prompt", "cartoon", "--seed", "1", "--steps", "2", "--out", str(tmp_path)]) == 0
    (run,) = tmp_path.iterdir()
    mask = Image.open(run / "mask.png")
    assert mask.size == (64, 64) and mask.getpixel((32, 32)) == 255 and mask.getpixel((60, 2)) == 0
    assert Image.open(run / "mask_overlay.png").size == (64, 64)
    rec = difflab.read_metadata(run / "0000-1.png")["difflab"]
    assert rec["boxes"] == [[0.25, 0.25, 0.75, 0.75]] and rec["negative_prompt"] == "cartoon"
    assert rec["keep_unmasked"] is True and rec["mask_dilate"] == 1


def test_ctrl_c_stops_cleanly_keeping_finished_images(tmp_path, photo_file):
    prompts = tmp_path / "p.txt"
    prompts.write_text("\n".join(f"prompt {i}" for i in range(50)))
    exe = Path(sys.executable).with_name("difflab")
    # Ctrl-C as from a terminal: SIGINT at its default in the child, even when these tests run as a background job
    # (a non-interactive shell starts `cmd &` with SIGINT ignored, the child would inherit that and never stop)
    proc = subprocess.Popen([str(exe), "generate", "--model", "tiny", "--prompts-file", str(prompts), "--steps", "30",
                             "--seed", "0", "--out", str(tmp_path / "res")], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 120
    while time.time() < deadline and not list((tmp_path / "res").glob("*/0001-0.png")):
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr and "difflab: interrupted;" in stderr
    (run,) = (tmp_path / "res").iterdir()
    info = json.loads((run / "run.json").read_text())
    pngs = sorted(run.glob("*.png"))
    assert info["status"] == "interrupted" and 2 <= len(pngs) < 50
    assert [p.name for p in pngs] == info["images"]
    for png in pngs:
        Image.open(png).load()  # every file that exists is whole
    assert not list(run.glob(".*"))


@pytest.mark.parametrize("command", [["info", "{image}"], ["info", "--json", "{image}"], ["runs", "{runs}"],
                                     ["--help"]])
def test_printing_commands_exit_quietly_when_the_reader_goes_away(sd, tmp_path, command):
    image = difflab.generate(sd, prompt="a boat", seed=1, num_inference_steps=2)[0].save(tmp_path / "runs" / "x.png")
    difflab.run_sweep({"name": "s", "model": "tiny", "params": {"prompt": "a fox", "num_inference_steps": 2, "seed": 1},
                       "x": {"param": "guidance_scale", "values": [1.0, 2.0]}}, out=tmp_path / "runs", progress=False)
    argv = [a.format(image=image, runs=tmp_path / "runs") for a in command]
    proc = subprocess.Popen([sys.executable, "-m", "difflab", *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # like `| head -0`: nobody reads
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) in (0, 141) and "Traceback" not in err and "BrokenPipe" not in err, err
