"""The MkDocs hook that turns TeX into MathML at build time."""

import importlib.util
import pathlib
import types

import pytest

pytest.importorskip("latex2mathml")

pytestmark = pytest.mark.docs

_HOOK = pathlib.Path(__file__).resolve().parents[2] / "docs" / "hooks" / "mathml.py"
_spec = importlib.util.spec_from_file_location("mathml_hook", _HOOK)
mathml = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(mathml)


def _page(src_uri):
    return types.SimpleNamespace(file=types.SimpleNamespace(src_uri=src_uri))


def test_arithmatex_inline_and_block_become_mathml():
    content = (
        '<p>Target <span class="arithmatex">\\(s\\cos(\\theta_y + m) &lt; s\\)</span>.</p>'
        '<div class="arithmatex">\\[\n z_j = s \\cos\\theta_j \n\\]</div>'
    )
    out = mathml.on_page_content(content, _page("heads/arc_face.md"), None, None)
    assert out.count("<math") == 2
    assert 'display="inline"' in out and 'display="block"' in out
    assert "<msub><mi>&#x003B8;</mi><mi>y</mi></msub>" in out.replace("<mrow>", "").replace(
        "</mrow>", ""
    )
    # The escaped "<" of the TeX source became a MathML operator, not text.
    assert "<mo>&#x0003C;</mo>" in out
    assert "\\(" not in out and "\\[" not in out
    assert '<annotation encoding="application/x-tex">z_j = s \\cos\\theta_j</annotation>' in out


def test_notebook_markdown_cells_are_converted_and_code_is_kept():
    content = (
        "<!-- Load mathjax --><script src='https://cdn.example/mathjax.js'></script>"
        "<!-- End of mathjax configuration -->"
        '<div class="jp-RenderedHTMLCommon jp-RenderedMarkdown jp-MarkdownOutput">'
        "<p>Price $a_1$ and</p>$$b^2$$<code>x = '$HOME'</code></div>"
        '<div class="jp-OutputArea">$not math$</div>'
    )
    out = mathml.on_page_content(content, _page("tutorials/01.ipynb"), None, None)
    assert "mathjax" not in out
    assert out.count("<math") == 2
    assert "<code>x = '$HOME'</code>" in out
    assert "$not math$" in out


def test_an_unconvertible_formula_is_a_warning(caplog):
    out = mathml.on_page_content(
        '<span class="arithmatex">\\(x^\\)</span>', _page("bad.md"), None, None
    )
    assert "<math" not in out
    assert any("Cannot convert math" in record.message for record in caplog.records)


def test_an_unknown_command_is_a_warning(caplog):
    mathml.on_page_content(
        '<span class="arithmatex">\\(\\nosuchcommand x\\)</span>', _page("bad.md"), None, None
    )
    assert any("Unsupported TeX command" in record.message for record in caplog.records)


class _Files:
    def __init__(self, pages):
        self.pages = pages

    def get_file_from_path(self, path):
        return self.pages.get(path)


class _File:
    def __init__(self, src_uri, url):
        self.src_uri = src_uri
        self.url = url

    def url_relative_to(self, other):
        return "../" * other.url.count("/") + self.url


def test_notebook_links_point_at_the_built_pages(caplog):
    notebook = _File("tutorials/01_margin_heads.ipynb", "tutorials/01_margin_heads/")
    files = _Files(
        {
            "tutorials/02_decision_boundaries.ipynb": _File(
                "tutorials/02_decision_boundaries.ipynb", "tutorials/02_decision_boundaries/"
            ),
            "training.md": _File("training.md", "training/"),
        }
    )
    page = types.SimpleNamespace(file=notebook)
    content = (
        '<div class="jp-RenderedHTMLCommon jp-RenderedMarkdown"><p>'
        '<a href="02_decision_boundaries.ipynb#setup">next</a> '
        '<a href="../docs/training.md">training</a> '
        '<a href="https://example.org/x.md">web</a> '
        '<a href="missing.ipynb">gone</a></p></div>'
    )
    out = mathml.on_page_content(content, page, None, files)
    assert 'href="../../tutorials/02_decision_boundaries/#setup"' in out
    assert 'href="../../training/"' in out
    assert 'href="https://example.org/x.md"' in out
    assert any("missing.ipynb" in record.message for record in caplog.records)
