"""mkdocs hook: the docstrings' Sphinx roles (:class:`~a.b.C`, :func:`f`) render as code, not as text.

The library's docstrings name other objects the Sphinx way; Markdown would print the role itself
(":class:" before the name). A Markdown preprocessor drops the role and, as Sphinx does for ``~``,
keeps only the last part of a dotted name. It is added before mkdocstrings reads the extensions
(priority above the default 0), so docstrings and pages are rendered alike.
"""

from __future__ import annotations

import re

from markdown import Markdown
from markdown.extensions import Extension
from markdown.preprocessors import Preprocessor
from mkdocs.config.defaults import MkDocsConfig
from mkdocs.plugins import event_priority

ROLE = re.compile(r":(?:py:)?(?:mod|class|func|meth|data|attr|exc|obj|const):`(~?)([^`]+)`")


def strip_role(match: re.Match[str]) -> str:
    """``:class:`~a.b.C``` -> ```C```; ``:func:`a.f``` -> ```a.f```."""
    tilde, name = match.groups()
    name = "".join(name.split())  # a dotted name wrapped over two lines
    return f"`{name.rsplit('.', 1)[-1] if tilde else name}`"


class _RolePreprocessor(Preprocessor):  # type: ignore[misc]
    def run(self, lines: list[str]) -> list[str]:
        # on the whole text: a name in backticks may be wrapped onto the next line
        return ROLE.sub(strip_role, "\n".join(lines)).split("\n")


class SphinxRoles(Extension):  # type: ignore[misc]  # Markdown ships no type hints
    """Markdown extension that replaces Sphinx cross-reference roles by inline code."""

    def extendMarkdown(self, md: Markdown) -> None:
        md.preprocessors.register(_RolePreprocessor(md), "sphinx_roles", 30)


@event_priority(100)
def on_config(config: MkDocsConfig) -> MkDocsConfig:
    """Add :class:`SphinxRoles` to the site's Markdown extensions."""
    config.markdown_extensions.append(SphinxRoles())  # type: ignore[arg-type]
    return config
