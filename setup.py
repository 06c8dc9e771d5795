"""Build step that puts the shipped model and the dashboard into the wheel.

Everything else is in ``pyproject.toml``. A plain ``pip install`` must classify at once and start
the dashboard, so the wheel carries, under ``galaxy_core/_bundle/``, what a checkout keeps beside
the code: ``models/resnet50_gz1`` (fp16 weights, model.json, OOD reference, gated int8 ONNX,
reports), ``app.py``, ``pages/``, ``dashboard/`` and ``.streamlit/config.toml``. They are copied
from the working tree when the wheel is built, so the wheel holds whatever model is shipped at
that moment; ``galaxy_core.locations`` finds them there when no checkout is around. Editable
installs (``make setup``) copy nothing: the checkout is used as it is.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
BUNDLED = ("app.py", "pages", "dashboard", ".streamlit/config.toml", "models/resnet50_gz1")
"""Checkout paths copied into ``galaxy_core/_bundle`` (same relative layout)."""
SKIPPED = ("__pycache__", "*.pyc", "model.onnx", "gradcam_cache.npz")
"""Never shipped: caches, and the float32 ONNX copy (git-ignored, exported on first use)."""


class BuildPyWithBundle(build_py):
    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return
        bundle = Path(self.build_lib) / "galaxy_core" / "_bundle"
        for name in BUNDLED:
            source, target = ROOT / name, bundle / name
            if not source.exists():
                raise FileNotFoundError(f"cannot build the wheel without {source}")
            target.parent.mkdir(parents=True, exist_ok=True)
            if source.is_dir():
                shutil.copytree(source, target, dirs_exist_ok=True,
                                ignore=shutil.ignore_patterns(*SKIPPED))
            else:
                shutil.copy2(source, target)


setup(cmdclass={"build_py": BuildPyWithBundle})
