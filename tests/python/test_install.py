"""The Python client installs as a package: pip install ./clients/python in a fresh virtual
environment (no network: --no-build-isolation --no-deps), then importable from anywhere."""
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
PACKAGE = os.path.normpath(os.path.join(HERE, "..", "..", "clients", "python"))


class InstallTest(unittest.TestCase):
    def test_pip_install_in_a_fresh_venv(self):
        with tempfile.TemporaryDirectory() as tmp:
            venv = os.path.join(tmp, "venv")
            # Building needs setuptools and wheel, which --no-build-isolation takes from the environment:
            # Debian's (python3-setuptools, python3-wheel), seen through --system-site-packages.
            made = subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", venv], capture_output=True,
                                  text=True)
            if made.returncode != 0:
                self.skipTest(f"no venv module here ({made.stderr.strip()}): scripts/setup installs python3-venv")
            python = os.path.join(venv, "bin", "python")
            # From a copy: building writes build/ and *.egg-info beside the sources.
            source = shutil.copytree(PACKAGE, os.path.join(tmp, "imgsearch-client"),
                                     ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
            pip = subprocess.run(
                [python, "-m", "pip", "install", "--no-build-isolation", "--no-deps", "--no-index", source],
                capture_output=True, text=True, cwd=tmp)
            self.assertEqual(pip.returncode, 0, pip.stdout + pip.stderr)
            # From another folder, with nothing of the source tree on the path.
            probe = subprocess.run(
                [python, "-c", "import imgsearch_client as c, os; print(c.__version__); print(os.path.dirname(c.__file__))"],
                capture_output=True, text=True, cwd=tmp, env={"PATH": os.environ.get("PATH", "")})
            self.assertEqual(probe.returncode, 0, probe.stderr)
            version, where = probe.stdout.split()
            sys.path.insert(0, PACKAGE)
            import imgsearch_client  # the source's version
            self.assertEqual(version, imgsearch_client.__version__)
            self.assertTrue(where.startswith(venv), where)
            shown = subprocess.run([python, "-m", "pip", "show", "imgsearch-client"], capture_output=True, text=True)
            self.assertIn("Name: imgsearch-client", shown.stdout)


if __name__ == "__main__":
    unittest.main()
