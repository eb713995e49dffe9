"""The documentation site builds strictly and renders in a real browser.

`mkdocs build --strict` turns every warning (a broken link, a missing page, a docstring
that mkdocstrings cannot parse, an equation that cannot be converted) into a failure. The
built pages are then opened in headless Chromium (`check_site.py`). Skipped when the docs
dependencies (`pip install -e ".[docs]"`) or Chromium (`apt-get install chromium
chromium-driver`) are missing.
"""

import importlib
import importlib.util
import os
import pathlib
import re
import subprocess
import sys
import types

import pytest

pytest.importorskip("mkdocs")
pytest.importorskip("mkdocstrings_handlers.python")
pytest.importorskip("mkdocs_jupyter")
pytest.importorskip("latex2mathml")

pytestmark = pytest.mark.docs

ROOT = pathlib.Path(__file__).resolve().parents[2]


def _load_check_site():
    spec = importlib.util.spec_from_file_location(
        "check_site", pathlib.Path(__file__).with_name("check_site.py")
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


check_site = _load_check_site()


@pytest.fixture(scope="module")
def built_site(tmp_path_factory):
    site_dir = tmp_path_factory.mktemp("site")
    environment = dict(os.environ, NO_MKDOCS_2_WARNING="1")
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site_dir)],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=900,
    )
    return result, site_dir


def test_site_builds_strictly_without_warnings(built_site):
    result, site_dir = built_site
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-5000:]
    warnings = [line for line in log.splitlines() if "WARNING" in line]
    assert warnings == []
    for page in ("index.html", "heads/arc_face/index.html", "api/heads/index.html"):
        assert (site_dir / page).is_file(), page


def _public_names(module):
    if hasattr(module, "__all__"):
        return list(module.__all__)
    return [
        name
        for name, value in vars(module).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    ]


@pytest.mark.parametrize("package", ["heads", "models", "data", "evaluation", "training"])
def test_api_reference_documents_every_public_symbol(built_site, package):
    result, site_dir = built_site
    if result.returncode != 0:
        pytest.skip("the site did not build (see the build test)")
    module = importlib.import_module(f"keras_face.{package}")
    anchors = set()
    for page in site_dir.rglob("*.html"):
        anchors.update(re.findall(r'id="(keras_face\.[\w.]+)"', page.read_text(encoding="utf-8")))
    prefix = f"keras_face.{package}."
    missing = [
        name
        for name in _public_names(module)
        if prefix + name not in anchors
        # Documented at its defining path (e.g. a function named like its module).
        and not any(anchor.startswith(prefix) and anchor.endswith("." + name) for anchor in anchors)
    ]
    assert missing == []


def test_site_renders_in_headless_chromium(built_site, tmp_path):
    browser, driver = check_site.find_chromium()
    if browser is None or driver is None:
        pytest.skip("Chromium and chromedriver are not installed")
    pytest.importorskip("selenium")
    result, site_dir = built_site
    if result.returncode != 0:
        pytest.skip("the site did not build (see the build test)")
    failures, summaries = check_site.check_site(str(site_dir), str(tmp_path))
    assert failures == [], "\n".join(failures)
    assert len(summaries) == len(check_site.PAGES)
    for name in ("index.png", "heads_arc_face.png"):
        assert (tmp_path / name).stat().st_size > 10_000
