"""The pipeline's report as data: sections of typed text, tables and images, rendered by two small renderers
(Markdown with images beside it, self-contained HTML). Both read the same sections, so they never disagree, and
neither parses the other's output.
"""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass
from pathlib import Path

from edgecnn.core.files import write_bytes_atomic
from edgecnn.report.tables import Cell, TextTable, Verdict


class Code(str):
    """Inline code in report text (`x` in Markdown, <code> in HTML)."""


class Bold(str):
    """Emphasis in report text (**x** in Markdown, <strong> in HTML)."""


Text = tuple[str, ...]  # one paragraph or bullet: plain strings, Code and Bold


@dataclass(frozen=True)
class Section:
    title: str
    text: Text = ()
    table: TextTable | None = None
    image: Path | None = None
    bullets: tuple[Text, ...] = ()


# --- Markdown ----------------------------------------------------------------------------------------------------

def markdown_text(text: Text) -> str:
    return "".join(f"`{part}`" if isinstance(part, Code) else f"**{part}**" if isinstance(part, Bold) else part for part in text)


def markdown_cell(cell: Cell) -> str:
    return str(cell).replace("|", "\\|")


def to_markdown(title: str, sections: list[Section]) -> str:
    lines = [f"# {title}", ""]
    for section in sections:
        lines += [f"## {section.title}", ""]
        if section.text:
            lines += [markdown_text(section.text), ""]
        if section.bullets:
            lines += [f"- {markdown_text(bullet)}" for bullet in section.bullets] + [""]
        if section.table is not None:
            table = section.table
            lines.append("| " + " | ".join(table.headers) + " |")
            lines.append("|" + "|".join("---" if index < table.left_columns else "---:" for index in range(len(table.headers))) + "|")
            lines += ["| " + " | ".join(markdown_cell(cell) for cell in row) + " |" for row in table.rows]
            lines.append("")
        if section.image is not None:
            lines += [f"![{section.title}]({section.image.name})", ""]
    return "\n".join(lines)


# --- HTML --------------------------------------------------------------------------------------------------------

STYLE = """
body { font-family: system-ui, -apple-system, Segoe UI, sans-serif; max-width: 1100px; margin: 2rem auto; padding: 0 1rem; color: #1d2330; }
h1 { border-bottom: 2px solid #3b6fd8; padding-bottom: .3rem; }
h2 { margin-top: 2rem; color: #2b4c91; }
table { border-collapse: collapse; margin: .5rem 0 1rem; font-size: .9rem; }
th, td { border: 1px solid #d3d8e2; padding: .3rem .6rem; text-align: right; }
th { background: #eef2fa; }
td.text, th:first-child { text-align: left; }
img { max-width: 100%; border: 1px solid #e1e5ee; }
code { background: #f3f4f7; padding: 0 .2rem; }
.pass { color: #1a7f37; font-weight: 600; } .fail { color: #c62828; font-weight: 600; }
"""

def html_text(text: Text) -> str:
    def tagged(part: str) -> str:
        escaped = html.escape(part)
        return f"<code>{escaped}</code>" if isinstance(part, Code) else f"<strong>{escaped}</strong>" if isinstance(part, Bold) else escaped

    return "".join(tagged(part) for part in text)


def html_cell(cell: Cell) -> str:
    if isinstance(cell, Verdict):
        return f'<span class="{"pass" if cell.passed else "fail"}">{html.escape(cell.text)}</span>'
    return html.escape(cell)


def html_table(table: TextTable) -> str:
    head = "".join(f"<th>{html.escape(header)}</th>" for header in table.headers)
    body = "".join(
        "<tr>" + "".join(f"<td{' class=text' if index < table.left_columns else ''}>{html_cell(cell)}</td>" for index, cell in enumerate(row)) + "</tr>"
        for row in table.rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def to_html(title: str, sections: list[Section]) -> str:
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title><style>{STYLE}</style></head><body>",
             f"<h1>{html.escape(title)}</h1>"]
    for section in sections:
        parts.append(f"<h2>{html.escape(section.title)}</h2>")
        if section.text:
            parts.append(f"<p>{html_text(section.text)}</p>")
        if section.bullets:
            parts.append("<ul>" + "".join(f"<li>{html_text(bullet)}</li>" for bullet in section.bullets) + "</ul>")
        if section.table is not None:
            parts.append(html_table(section.table))
        if section.image is not None and section.image.is_file():
            encoded = base64.b64encode(section.image.read_bytes()).decode()
            parts.append(f"<img alt='{html.escape(section.title)}' src='data:image/png;base64,{encoded}'>")
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(folder: Path, title: str, sections: list[Section], stem: str = "report") -> tuple[Path, Path]:
    markdown_path, html_path = folder / f"{stem}.md", folder / f"{stem}.html"
    write_bytes_atomic(markdown_path, to_markdown(title, sections).encode())
    write_bytes_atomic(html_path, to_html(title, sections).encode())
    return markdown_path, html_path
