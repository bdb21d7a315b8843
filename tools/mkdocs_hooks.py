"""mkdocs hooks for the documentation site (``mkdocs.yml``: ``hooks:``).

- ``docs/cli.md``: the marker ``<!-- symconv-cli-reference -->`` becomes the reference that
  ``tools/gen_cli_docs.py`` renders from the argparse parsers (every command, as ``--help``
  prints it).
- Navigation: an entry of ``nav`` whose page does not exist (yet) is dropped with a note instead
  of failing the ``--strict`` build, so pages another change is still writing can be listed
  ahead of time; they appear once their file lands.
- API reference: the docstrings use Sphinx roles (``:class:`X```); the role names are dropped
  from the rendered HTML, and ``~a.b.C`` is shown as ``C``.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from typing import Any

log = logging.getLogger("mkdocs.hooks.symconv")

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLI_MARKER = "<!-- symconv-cli-reference -->"


def _prune(items: list[Any], docs_dir: str) -> list[Any]:
    out: list[Any] = []
    for item in items:
        if isinstance(item, dict):
            (title, value), = item.items()
            if isinstance(value, list):
                kept = _prune(value, docs_dir)
                if kept:
                    out.append({title: kept})
                continue
            item_path = value
        else:
            title, item_path = None, item
        if isinstance(item_path, str) and not item_path.startswith(("http://", "https://")) \
                and not os.path.exists(os.path.join(docs_dir, item_path)):
            log.info("nav: %s (%s) is not written yet; left out", item_path, title)
            continue
        out.append(item)
    return out


def on_config(config: Any) -> Any:
    if config.get("nav"):
        config["nav"] = _prune(config["nav"], config["docs_dir"])
    return config


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    if CLI_MARKER in markdown:
        if _ROOT not in sys.path:
            sys.path.insert(0, _ROOT)
        from tools.gen_cli_docs import render
        markdown = markdown.replace(CLI_MARKER, render(heading_level=2))
    return markdown


_ROLE = re.compile(r":(?:class|func|meth|mod|attr|data|exc|obj):<code>(~?)([^<]*)</code>")


def _role(m: re.Match[str]) -> str:
    name = m.group(2)
    if m.group(1):
        name = name.rsplit(".", 1)[-1]
    return f"<code>{name}</code>"


def on_page_content(html: str, page: Any, config: Any, files: Any) -> str:
    return _ROLE.sub(_role, html)
