"""The documentation site renders its equations: built strictly, served, and read back from a headless browser."""

from __future__ import annotations

import functools
import http.server
import re
import shutil
import subprocess
import threading

import pytest

from .conftest import REPO

BROWSER = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
PAGES = ["method/"]
"""Pages holding equations (pymdownx.arithmatex blocks)."""


@pytest.mark.slow
@pytest.mark.skipif(BROWSER is None or shutil.which("npm") is None, reason="needs chromium and npm (apt, registry)")
def test_every_equation_is_typeset_by_mathjax_in_a_browser(tmp_path):
    subprocess.run(["make", "docs"], cwd=REPO, check=True, capture_output=True, timeout=600)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(REPO / "site"))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        for page in PAGES:
            url = f"http://127.0.0.1:{server.server_port}/{page}"
            dom = subprocess.run([BROWSER, "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=15000",
                                  "--dump-dom", url], capture_output=True, text=True, timeout=120).stdout  # fmt: skip
            blocks = len(re.findall(r'class="arithmatex"', dom))
            typeset = len(re.findall(r"<mjx-container[^>]*>\s*<svg", dom))
            assert blocks > 0 and typeset >= blocks, (page, blocks, typeset)
            assert "\\mathcal" not in re.sub(r"<mjx-container.*?</mjx-container>", "", dom, flags=re.S), page
    finally:
        server.shutdown()
