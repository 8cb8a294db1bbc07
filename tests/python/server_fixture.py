"""Starts a real `imgsearch serve` over a fresh folder of photos for the Python tests.

The binaries come from the environment (ctest sets them): IMGSEARCH_BIN, IMGSEARCH_TEST_MODEL,
IMGSEARCH_MAKE_PHOTOS.
"""
import contextlib
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request
import json


@contextlib.contextmanager
def running_server(n_photos=16, extra_args=(), env=None, prepare=None, n_failed=0):
    """Yields (url, photos_folder) once the server has indexed every photo; the collection is in
    the folder "db" beside the photos. `prepare(photos)` may rearrange the photos before the server
    starts (the count must stay n_photos, plus n_failed files that cannot be read)."""
    work = tempfile.mkdtemp(prefix="imgsearch-py-")
    photos = os.path.join(work, "photos")
    subprocess.run([os.environ["IMGSEARCH_MAKE_PHOTOS"], "--out", photos, "--n", str(n_photos), "--seed", "5"],
                   check=True, stdout=subprocess.DEVNULL)
    if prepare is not None:
        prepare(photos)
    log_path = os.path.join(work, "serve.log")
    log = open(log_path, "w+")
    proc = subprocess.Popen(
        [os.environ["IMGSEARCH_BIN"], "serve", "--db", os.path.join(work, "db"), "--model",
         os.environ["IMGSEARCH_TEST_MODEL"], "--offline", "--watch", photos, "--listen", "127.0.0.1:0",
         *extra_args],
        stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})
    try:
        url = None
        deadline = time.time() + 120
        while time.time() < deadline and url is None:
            with open(log_path) as f:
                m = re.search(r"serving (http://[^/\s]+)/", f.read())
            if m:
                url = m.group(1)
            elif proc.poll() is not None:
                raise RuntimeError("serve exited:\n" + open(log_path).read())
            else:
                time.sleep(0.05)
        if url is None:
            raise RuntimeError("serve did not start:\n" + open(log_path).read())
        while time.time() < deadline:
            with urllib.request.urlopen(url + "/api/status") as r:
                s = json.load(r)
            if (s["collection"]["indexed"] == n_photos and s["collection"]["failed"] == n_failed
                    and s["ingest"]["idle"]):
                break
            time.sleep(0.1)
        else:
            raise RuntimeError("the photos were not indexed in time:\n" + open(log_path).read())
        yield url, photos
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
        shutil.rmtree(work, ignore_errors=True)
