"""Render an email from templates/email/<name>/{subject.txt, body.txt, body.html}.

The templates ship inside the installed package as `service.email_templates` (pyproject.toml
maps the source tree's templates/email/ to it), so a wheel install finds them wherever it
lands; CHAPAR_TEMPLATES_DIR points at another folder holding an email/ folder instead.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jinja2 import (
    BaseLoader,
    Environment,
    FileSystemLoader,
    PackageLoader,
    StrictUndefined,
    select_autoescape,
)

from service.persian import persian_digits, single_line


@dataclass(frozen=True)
class RenderedEmail:
    subject: str
    text: str
    html: str


def inline_css(html: str) -> str:
    """Inline the <style> rules into style attributes, keeping @media rules intact.

    strip_important=False keeps `!important` inside media queries (dark mode and the
    phone layout depend on it); allow_network=False: rendering never fetches a URL.
    CSS widths stay CSS: the width attributes are Outlook's fixed sizes, and a fluid
    `width:100%` copied into them would replace those.
    Costs ~40 ms, so it runs once per issue, never per recipient.
    """
    import premailer  # ~0.1 s to import (cssutils): only where an email is rendered

    transformer = premailer.Premailer(
        html=html,
        allow_network=False,
        strip_important=False,
        keep_style_tags=True,
        remove_classes=False,
        disable_validation=True,
        disable_basic_attributes=["width", "height"],
        cssutils_logging_level="CRITICAL",
    )
    out: str = transformer.transform(pretty_print=False)
    return out


_BLANK_LINES = re.compile(r"\n{3,}")


PACKAGED_TEMPLATES = "service.email_templates"


def email_loader(templates_dir: Path | None) -> BaseLoader:
    """The packaged templates (found through the import system), or templates_dir/email."""
    if templates_dir is None:
        return PackageLoader(PACKAGED_TEMPLATES, ".")
    return FileSystemLoader(templates_dir / "email")


class EmailTemplates:
    """The Jinja2 environment for emails: HTML autoescaped, text not."""

    def __init__(self, templates_dir: Path | None = None) -> None:
        self.env = Environment(
            loader=email_loader(templates_dir),
            autoescape=select_autoescape(enabled_extensions=("html",), default_for_string=False),
            undefined=StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=True,
        )
        self.env.filters["fa_digits"] = persian_digits

    def render(self, name: str, context: Mapping[str, Any], *, inline: bool = True) -> RenderedEmail:
        subject = self.env.get_template(f"{name}/subject.txt").render(context)
        text = self.env.get_template(f"{name}/body.txt").render(context)
        html = self.env.get_template(f"{name}/body.html").render(context)
        return RenderedEmail(
            subject=single_line(subject),
            text=_BLANK_LINES.sub("\n\n", text).strip() + "\n",
            html=inline_css(html) if inline else html,
        )
