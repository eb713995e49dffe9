"""Open the built documentation site in headless Chromium and check that pages render.

Serves a built site folder (`mkdocs build`) on 127.0.0.1 and loads pages in a real
browser (Chromium driven by chromedriver through Selenium). For each page it checks, from
the laid-out DOM:

- the page title and its first heading;
- a rendered equation: a MathML `<math>` element that the browser lays out as math
  (computed `display` is `math` / `block math`), with a non-zero size, and whose
  subscripts sit below their base (a real layout, not text that merely contains TeX);
- for a head page, the API table of mkdocstrings (the "Parameters" table of the class,
  with the constructor arguments as rows);
- that every resource the page loaded came from the local server (the site works
  offline: no CDN, no web fonts).

It writes a PNG screenshot of each page when `--screenshots DIR` is given.

Usage:
    python tests/docs/check_site.py site/ [--screenshots DIR]

Exit status 0 when every check passes; the failures are printed otherwise.
"""

import argparse
import contextlib
import functools
import http.server
import os
import shutil
import sys
import tempfile
import threading

# Pages checked: (path under the site, expected heading text, expected parameter names of
# the API table, or None for a page without one).
PAGES = (
    ("", "keras_face", None),
    ("heads/arc_face/", "ArcFace", ("num_classes", "scale", "margin", "fallback")),
)

CHROMIUM_ARGUMENTS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--no-first-run",
    "--window-size=1280,1600",
)


def find_chromium():
    """Paths of the Chromium binary and of chromedriver, or `None` for a missing one."""
    browser = next(
        (
            shutil.which(name)
            for name in ("chromium", "chromium-browser", "google-chrome")
            if shutil.which(name)
        ),
        None,
    )
    return browser, shutil.which("chromedriver")


@contextlib.contextmanager
def serve(directory):
    """Serve `directory` over HTTP on 127.0.0.1 (a free port) in a background thread."""
    handler = functools.partial(_QuietHandler, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):
        pass


@contextlib.contextmanager
def open_browser(browser_path, driver_path):
    """A headless Chromium session with a fresh profile folder."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="keras_face_chromium_")
    options = webdriver.ChromeOptions()
    options.binary_location = browser_path
    for argument in CHROMIUM_ARGUMENTS:
        options.add_argument(argument)
    options.add_argument(f"--user-data-dir={profile}")
    driver = webdriver.Chrome(options=options, service=Service(executable_path=driver_path))
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


# Runs in the page: gathers what the checks need from the laid-out document.
_INSPECT_PAGE = """
const visible = (element) => {
  const box = element.getBoundingClientRect();
  return {width: box.width, height: box.height, top: box.top, bottom: box.bottom};
};
const heading = document.querySelector("article h1, .md-content h1");
const maths = Array.from(document.querySelectorAll("article math"));
const subscripts = Array.from(document.querySelectorAll("article msub")).slice(0, 20).map(
  (element) => ({base: visible(element.children[0]), script: visible(element.children[1])}));
const tables = Array.from(document.querySelectorAll("article .doc table")).map((table) => ({
  header: Array.from(table.querySelectorAll("thead th")).map((th) => th.textContent.trim()),
  firstColumn: Array.from(table.querySelectorAll("tbody tr")).map(
    (row) => row.cells.length ? row.cells[0].textContent.trim() : ""),
  box: visible(table),
  title: (() => {
    let node = table.previousElementSibling;
    return node ? node.textContent.trim() : "";
  })(),
}));
return {
  title: document.title,
  heading: heading ? heading.textContent.trim() : null,
  headingBox: heading ? visible(heading) : null,
  maths: maths.map((element) => ({
    display: getComputedStyle(element).display,
    box: visible(element),
    text: element.textContent.slice(0, 80),
  })),
  subscripts: subscripts,
  tables: tables,
  resources: performance.getEntriesByType("resource").map((entry) => entry.name),
};
"""


def check_page(driver, base_url, path, expected_heading, expected_parameters):
    """Load one page and return the list of failed checks (empty when it renders)."""
    driver.get(base_url + path)
    page = driver.execute_script(_INSPECT_PAGE)
    failures = []
    where = f"/{path}"

    if expected_heading not in page["title"]:
        failures.append(f"{where}: title {page['title']!r} lacks {expected_heading!r}")
    if page["heading"] is None or expected_heading not in page["heading"]:
        failures.append(f"{where}: first heading {page['heading']!r} lacks {expected_heading!r}")
    elif page["headingBox"]["height"] <= 0:
        failures.append(f"{where}: the first heading has no height")

    rendered = [
        math
        for math in page["maths"]
        if "math" in math["display"] and math["box"]["width"] > 0 and math["box"]["height"] > 0
    ]
    if not page["maths"]:
        failures.append(f"{where}: no <math> element (equations are not rendered)")
    elif not rendered:
        failures.append(
            f"{where}: no <math> element is laid out as math with a non-zero size: "
            f"{page['maths'][:3]}"
        )
    lowered = [
        sub
        for sub in page["subscripts"]
        if sub["script"]["bottom"] > sub["base"]["bottom"] and sub["base"]["height"] > 0
    ]
    if page["subscripts"] and not lowered:
        failures.append(f"{where}: subscripts are not laid out below their base")

    if expected_parameters is not None:
        tables = [
            table
            for table in page["tables"]
            if all(name in table["firstColumn"] for name in expected_parameters)
        ]
        if not tables:
            failures.append(
                f"{where}: no API table lists the parameters {expected_parameters}; "
                f"tables found: {[table['firstColumn'][:6] for table in page['tables']]}"
            )
        elif tables[0]["box"]["height"] <= 0 or tables[0]["box"]["width"] <= 0:
            failures.append(f"{where}: the API table has no size")

    foreign = [url for url in page["resources"] if not url.startswith(base_url)]
    if foreign:
        failures.append(f"{where}: resources loaded from outside the site: {foreign}")

    summary = (
        f"{where}: title={page['title']!r}, {len(rendered)}/{len(page['maths'])} equations "
        f"rendered, {len(page['tables'])} API tables, {len(page['resources'])} resources"
    )
    return failures, summary


def check_site(site_dir, screenshot_dir=None, pages=PAGES):
    """Check `pages` of the site built in `site_dir`.

    Returns:
        `(failures, summaries)`: lists of strings; the site passes when `failures` is empty.
    """
    browser_path, driver_path = find_chromium()
    if browser_path is None or driver_path is None:
        raise FileNotFoundError(
            "Chromium and chromedriver are needed (Debian: apt-get install chromium "
            f"chromium-driver). Received: chromium={browser_path}, chromedriver={driver_path}"
        )
    if not os.path.isfile(os.path.join(site_dir, "index.html")):
        raise FileNotFoundError(
            f"No built site (index.html) in the folder. Received: site_dir={site_dir}"
        )
    failures, summaries = [], []
    with serve(site_dir) as base_url, open_browser(browser_path, driver_path) as driver:
        for path, heading, parameters in pages:
            page_failures, summary = check_page(driver, base_url, path, heading, parameters)
            failures.extend(page_failures)
            summaries.append(summary)
            if screenshot_dir is not None:
                os.makedirs(screenshot_dir, exist_ok=True)
                name = path.strip("/").replace("/", "_") or "index"
                driver.save_screenshot(os.path.join(screenshot_dir, f"{name}.png"))
    return failures, summaries


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("site_dir", help="folder of the built site (mkdocs build)")
    parser.add_argument("--screenshots", help="folder for PNG screenshots of the pages")
    args = parser.parse_args(argv)
    failures, summaries = check_site(args.site_dir, args.screenshots)
    for summary in summaries:
        print(summary)
    for failure in failures:
        print("FAILED", failure)
    print(f"site check: {len(PAGES)} pages, {len(failures)} failures")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
