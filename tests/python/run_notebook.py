"""Executes examples/image_search.ipynb against a live server; fails if any cell fails.

Runs with Debian's python3 and jupyter-nbconvert (scripts/setup installs them); skips (exit 77)
when they are missing. The notebook imports the client as users have it: installed with pip, here
into a fresh virtual environment whose python the notebook's kernel runs.
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from server_fixture import running_server  # noqa: E402

SKIP = 77
NOTEBOOK = os.path.join(HERE, "..", "..", "examples", "image_search.ipynb")


def run(work):
    nbconvert = shutil.which("jupyter-nbconvert")
    if nbconvert is None:
        print("SKIPPED: jupyter-nbconvert is not installed (scripts/setup installs it)")
        return SKIP
    out_dir = sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp()
    os.makedirs(out_dir, exist_ok=True)
    venv = os.path.join(work, "venv")
    if subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", venv]).returncode != 0:
        print("SKIPPED: no venv module (scripts/setup installs python3-venv)")
        return SKIP
    python = os.path.join(venv, "bin", "python")
    package = shutil.copytree(os.path.join(HERE, "..", "..", "clients", "python"), os.path.join(work, "client"),
                              ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    subprocess.run([python, "-m", "pip", "install", "-q", "--no-build-isolation", "--no-deps", "--no-index", package],
                   check=True)
    # The kernel the notebook names ("python3"), run by the environment's python.
    kernel = os.path.join(work, "jupyter", "kernels", "python3")
    os.makedirs(kernel)
    with open(os.path.join(kernel, "kernel.json"), "w") as f:
        json.dump({"argv": [python, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                   "display_name": "Python 3 (imgsearch client)", "language": "python"}, f)
    with running_server(n_photos=12) as (url, _):
        env = {**os.environ, "IMGSEARCH_URL": url, "JUPYTER_PATH": os.path.join(work, "jupyter")}
        result = subprocess.run(
            [nbconvert, "--to", "notebook", "--execute", "--ExecutePreprocessor.timeout=300",
             "--output-dir", out_dir, "--output", "image_search.executed.ipynb", NOTEBOOK],
            env=env, capture_output=True, text=True)
    print(result.stdout[-4000:])
    print(result.stderr[-8000:])
    if result.returncode != 0:
        print("FAIL: the notebook did not run to the end")
        return 1
    executed = os.path.join(out_dir, "image_search.executed.ipynb")
    text = open(executed).read()
    if '"output_type": "error"' in text or "data:image/jpeg;base64" not in text:
        print("FAIL: a cell produced an error, or no image grid was shown")
        return 1
    print(f"ok: every cell ran; executed notebook in {executed}")
    return 0


def main():
    work = tempfile.mkdtemp()
    try:
        return run(work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
