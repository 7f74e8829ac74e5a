"""How difflab is installed and opened: Jupyter with the environment's own kernel, and a non-editable install."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_jupyter_lab_is_installed_and_its_python3_kernel_is_this_environment():
    jupyter = Path(sys.executable).with_name("jupyter")
    lab = subprocess.run([str(jupyter), "lab", "--version"], capture_output=True, text=True, timeout=120)
    assert lab.returncode == 0 and int(lab.stdout.split(".")[0]) >= 4, lab.stderr
    # start the kernel the notebooks name, as Jupyter and papermill do, and ask it where it lives
    from jupyter_client.manager import start_new_kernel

    manager, client = start_new_kernel(kernel_name="python3")
    try:
        said = []
        client.execute_interactive("import sys; print(sys.prefix)", timeout=60,
                                   output_hook=lambda msg: said.append(msg["content"].get("text", "")))
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)
    assert "".join(said).strip() == sys.prefix  # this environment (the venv), not a system Python
    for path in (ROOT / "notebooks").glob("*.ipynb"):  # what the notebooks ask for
        assert json.loads(path.read_text())["metadata"]["kernelspec"]["name"] == "python3", path.name


def test_a_non_editable_install_finds_its_notebooks_or_says_where_it_looked(tmp_path):
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                    "--disable-pip-version-check", "--target", str(site), str(ROOT)], check=True, timeout=600,
                   capture_output=True)
    env = {k: v for k, v in os.environ.items() if k != "DIFFLAB_HOME"}
    env["PYTHONPATH"] = str(site)

    def difflab(*args, cwd, **extra):
        return subprocess.run([sys.executable, "-m", "difflab", *args], capture_output=True, text=True, timeout=300,
                              cwd=cwd, env={**env, **extra})

    where = subprocess.run([sys.executable, "-c", "import difflab; print(difflab.__file__)"], capture_output=True,
                           text=True, cwd=tmp_path, env=env, check=True).stdout
    assert where.startswith(str(site))  # the installed copy, not the checkout
    away = difflab("notebooks", "list", cwd=tmp_path)
    assert away.returncode == 2 and away.stderr.count("\n") == 1 and "Traceback" not in away.stderr
    assert "notebooks: no difflab notebooks/ and configs/ in" in away.stderr and "DIFFLAB_HOME" in away.stderr
    for result in (difflab("notebooks", "list", cwd=ROOT), difflab("notebooks", "list", cwd=tmp_path,
                                                                   DIFFLAB_HOME=str(ROOT))):
        assert result.returncode == 0, result.stderr
        assert result.stdout.splitlines()[0].startswith("01_text_to_image: model=")
