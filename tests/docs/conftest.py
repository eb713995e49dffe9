"""Registers the `docs` marker of the documentation-site tests."""


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "docs: builds the documentation site (mkdocs) and opens it in headless Chromium",
    )
