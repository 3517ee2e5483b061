"""The pipeline's report: one document, written as Markdown (images beside it) and as self-contained HTML.

Both are rendered from the same list of sections, so they never disagree.
"""

from __future__ import annotations

import base64
import html
import re
from dataclasses import dataclass
from pathlib import Path

from edgecnn.files import write_bytes_atomic
from edgecnn.tables import TextTable


@dataclass(frozen=True)
class Section:
    title: str
    text: str = ""
    table: TextTable | None = None
    image: Path | None = None
    bullets: tuple[str, ...] = ()


def to_markdown(title: str, sections: list[Section]) -> str:
    lines = [f"# {title}", ""]
    for section in sections:
        lines += [f"## {section.title}", ""]
        if section.text:
            lines += [section.text, ""]
        if section.bullets:
            lines += [f"- {bullet}" for bullet in section.bullets] + [""]
        if section.table is not None:
            table = section.table
            lines.append("| " + " | ".join(table.headers) + " |")
            lines.append("|" + "|".join("---" if index < table.left_columns else "---:" for index in range(len(table.headers))) + "|")
            lines += ["| " + " | ".join(row) + " |" for row in table.rows]
            lines.append("")
        if section.image is not None:
            lines += [f"![{section.title}]({section.image.name})", ""]
    return "\n".join(lines)


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


def inline_html(text: str) -> str:
    """The little Markdown the report uses inline: `code` and **bold**."""
    escaped = html.escape(text)
    escaped = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", escaped)
    return re.sub(r"`(.+?)`", r"<code>\1</code>", escaped)


def cell_html(value: str) -> str:
    escaped = inline_html(value)
    if value.startswith("PASS"):
        return f'<span class="pass">{escaped}</span>'
    if value.startswith(("FAIL", "CHANGED", "ERROR")):
        return f'<span class="fail">{escaped}</span>'
    return escaped


def to_html(title: str, sections: list[Section]) -> str:
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title><style>{STYLE}</style></head><body>",
             f"<h1>{html.escape(title)}</h1>"]
    for section in sections:
        parts.append(f"<h2>{html.escape(section.title)}</h2>")
        if section.text:
            parts.append(f"<p>{inline_html(section.text)}</p>")
        if section.bullets:
            parts.append("<ul>" + "".join(f"<li>{inline_html(bullet)}</li>" for bullet in section.bullets) + "</ul>")
        if section.table is not None:
            head = "".join(f"<th>{html.escape(header)}</th>" for header in section.table.headers)
            left = section.table.left_columns
            body = "".join(
                "<tr>" + "".join(f"<td{' class=text' if index < left else ''}>{cell_html(cell)}</td>" for index, cell in enumerate(row)) + "</tr>"
                for row in section.table.rows
            )
            parts.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
        if section.image is not None and section.image.is_file():
            encoded = base64.b64encode(section.image.read_bytes()).decode()
            parts.append(f"<img alt='{html.escape(section.title)}' src='data:image/png;base64,{encoded}'>")
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(folder: Path, title: str, sections: list[Section]) -> tuple[Path, Path]:
    markdown_path, html_path = folder / "report.md", folder / "report.html"
    write_bytes_atomic(markdown_path, to_markdown(title, sections).encode())
    write_bytes_atomic(html_path, to_html(title, sections).encode())
    return markdown_path, html_path
