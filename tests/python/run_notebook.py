"""Executes examples/image_search.ipynb against a live server; fails if any cell fails.

Runs with Debian's python3 and jupyter-nbconvert (scripts/setup installs them); skips (exit 77)
when they are missing.
"""
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


def main():
    nbconvert = shutil.which("jupyter-nbconvert")
    if nbconvert is None:
        print("SKIPPED: jupyter-nbconvert is not installed (scripts/setup installs it)")
        return SKIP
    out_dir = sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp()
    os.makedirs(out_dir, exist_ok=True)
    with running_server(n_photos=12) as (url, _):
        env = {**os.environ, "IMGSEARCH_URL": url,
               "IMGSEARCH_CLIENT_DIR": os.path.join(HERE, "..", "..", "clients", "python")}
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


if __name__ == "__main__":
    sys.exit(main())
