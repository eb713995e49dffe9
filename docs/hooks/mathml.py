"""MkDocs hook: render TeX math to MathML at build time, so the site needs no script or CDN.

It also rewrites (and checks) the relative links of the notebook pages, see
`_rewrite_notebook_links`.

`pymdownx.arithmatex` (in `generic` mode) wraps the math of the Markdown pages in
`<span class="arithmatex">\\(...\\)</span>` and `<div class="arithmatex">\\[...\\]</div>`;
this hook replaces each of them with the MathML that `latex2mathml` produces, which
browsers render natively (Chromium since version 109, Firefox, Safari). The notebook pages
rendered by mkdocs-jupyter keep their math as `$...$` / `$$...$$` text inside the Markdown
cells and load MathJax from a CDN; here the CDN script is dropped and the math of the
Markdown cells is converted the same way. A formula that cannot be converted is reported as
a warning, so `mkdocs build --strict` fails on it.
"""

import html
import logging
import posixpath
import re

from latex2mathml.converter import convert as latex_to_mathml

log = logging.getLogger("mkdocs.hooks.mathml")

_ARITHMATEX_INLINE = re.compile(r'<span class="arithmatex">\\\((.*?)\\\)</span>', re.S)
_ARITHMATEX_BLOCK = re.compile(r'<div class="arithmatex">\\\[(.*?)\\\]</div>', re.S)

# The MathJax loader and its configuration emitted by nbconvert's `mathjax` macro.
_MATHJAX_SCRIPTS = re.compile(
    r"<!-- Load mathjax -->.*?<!-- End of mathjax configuration -->", re.S
)
# A rendered Markdown cell of a notebook (its contents hold no nested <div> of that class).
_NOTEBOOK_MARKDOWN_CELL = re.compile(
    r'(<div class="[^"]*jp-RenderedMarkdown[^"]*"[^>]*>)(.*?)(</div>)', re.S
)
_DISPLAY_DOLLARS = re.compile(r"\$\$(.+?)\$\$", re.S)
_INLINE_DOLLARS = re.compile(r"(?<![\\$])\$(?!\s)([^$]+?)(?<!\s)\$(?!\$)")
# A TeX command left as text in the MathML output.
_UNKNOWN_COMMAND = re.compile(r">(\\[A-Za-z]+)<")
# Code spans and blocks must keep their dollar signs.
_CODE = re.compile(r"(<(code|pre)\b.*?</\2>)", re.S)


def _to_mathml(tex, display, page):
    source = html.unescape(tex).strip()
    try:
        mathml = latex_to_mathml(source, display="block" if display else "inline")
    except Exception as error:  # latex2mathml raises several exception types.
        log.warning("Cannot convert math %r on page %s: %s", source, page.file.src_uri, error)
        return html.escape(source)
    unknown = _UNKNOWN_COMMAND.findall(mathml)
    if unknown:
        # latex2mathml passes commands it does not know through as text.
        log.warning(
            "Unsupported TeX command %s in math %r on page %s", unknown, source, page.file.src_uri
        )
    # Keep the TeX source as an annotation: screen readers and copy-paste use it.
    annotation = f'<annotation encoding="application/x-tex">{html.escape(source)}</annotation>'
    mathml = mathml.replace("<mrow>", "<semantics><mrow>", 1)
    mathml = mathml[: mathml.rindex("</math>")] + annotation + "</semantics></math>"
    if "<semantics><mrow>" not in mathml:  # A formula without a top-level <mrow>.
        mathml = mathml.replace("<semantics>", "").replace("</semantics>", "")
        mathml = mathml.replace(annotation, "")
    tag = "div" if display else "span"
    return f'<{tag} class="arithmatex">{mathml}</{tag}>'


def _convert_dollars(fragment, page):
    """Convert `$$...$$` and `$...$` outside code in an HTML fragment."""
    pieces = _CODE.split(fragment)
    out = []
    for index, piece in enumerate(pieces):
        # re.split with two groups yields [text, code, tagname, text, code, tagname, ...].
        kind = index % 3
        if kind == 2:
            continue
        if kind == 1:
            out.append(piece)
            continue
        piece = _DISPLAY_DOLLARS.sub(lambda m: _to_mathml(m.group(1), True, page), piece)
        piece = _INLINE_DOLLARS.sub(lambda m: _to_mathml(m.group(1), False, page), piece)
        out.append(piece)
    return "".join(out)


# Relative links of a notebook to another notebook or to a documentation page.
_NOTEBOOK_LINK = re.compile(r'href="(?![a-z][a-z0-9+.-]*:|#|/)([^"#]+\.(?:ipynb|md))(#[^"]*)?"')


def _rewrite_notebook_links(content, page, files):
    """Point a notebook's relative links at the built pages, and report broken ones.

    In the repository a tutorial links `02_decision_boundaries.ipynb` or
    `../docs/training.md` (paths that work on GitHub and in Jupyter); on the site those
    are the pages `../02_decision_boundaries/` and `../../training/`. mkdocs validates the
    links of Markdown pages only, so the notebooks' links are checked here.
    """

    def replace(match):
        target = posixpath.normpath(
            posixpath.join(posixpath.dirname(page.file.src_uri), match.group(1))
        )
        if target.startswith("docs/"):
            target = target[len("docs/") :]
        found = files.get_file_from_path(target)
        if found is None:
            log.warning(
                "Notebook %s links to %r, which is not a page of the site",
                page.file.src_uri,
                match.group(1),
            )
            return match.group(0)
        return f'href="{found.url_relative_to(page.file)}{match.group(2) or ""}"'

    return _NOTEBOOK_LINK.sub(replace, content)


_TOC_MATH = re.compile(r"\\\((.*?)\\\)", re.S)


def _convert_toc_titles(items, page):
    """Math in a heading also shows in the table of contents: convert it there too."""
    for item in items:
        if "\\(" in item.title:
            item.title = _TOC_MATH.sub(lambda m: _to_mathml(m.group(1), False, page), item.title)
        _convert_toc_titles(item.children, page)


def on_page_content(content, page, config, files):
    if getattr(page, "toc", None) is not None:
        _convert_toc_titles(page.toc, page)
    content = _ARITHMATEX_BLOCK.sub(lambda m: _to_mathml(m.group(1), True, page), content)
    content = _ARITHMATEX_INLINE.sub(lambda m: _to_mathml(m.group(1), False, page), content)
    if page.file.src_uri.endswith(".ipynb"):
        content = _MATHJAX_SCRIPTS.sub("", content)
        content = _NOTEBOOK_MARKDOWN_CELL.sub(
            lambda m: m.group(1) + _convert_dollars(m.group(2), page) + m.group(3), content
        )
        content = _rewrite_notebook_links(content, page, files)
    return content
