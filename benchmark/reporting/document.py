"""A small Markdown + self-contained HTML writer, and the number formats every report uses.

`Document` collects headings, paragraphs, tables and figures; `write` renders report.md and
report.html (figures embedded as base64 PNG) into one folder. The study report, the ablation
report and the reproduction report all write through it.
"""

from __future__ import annotations

import base64
import csv
import html
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["Document", "format_ci", "format_p", "num", "params_text", "write_csv"]

_CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; color: #222;
       max-width: 1120px; margin: 24px auto; padding: 0 20px; line-height: 1.45; }
h1 { font-size: 1.7em; border-bottom: 2px solid #ddd; padding-bottom: 6px; }
h2 { font-size: 1.3em; margin-top: 1.8em; border-bottom: 1px solid #eee; padding-bottom: 4px; }
h3 { font-size: 1.08em; margin-top: 1.3em; }
table { border-collapse: collapse; margin: 10px 0 16px; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: #f3f3f3; }
tr:nth-child(even) td { background: #fafafa; }
code { background: #f2f2f2; padding: 1px 4px; border-radius: 3px; font-size: 0.92em; }
.note { background: #fff8e1; border-left: 4px solid #f0b400; padding: 6px 12px; margin: 10px 0; }
figure { margin: 14px 0 22px; }
figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { font-size: 0.88em; color: #555; margin-top: 4px; }
.gallery { display: flex; flex-wrap: wrap; gap: 12px; align-items: flex-start; }
.gallery figure { margin: 6px 0; }
.cols-2 figure { width: calc(50% - 6px); }
.cols-3 figure { width: calc(33.33% - 8px); }
.caption { font-size: 0.88em; color: #555; margin: -4px 0 6px; }
.v-helps { color: #1a7f37; font-weight: 600; }
.v-hurts { color: #c62828; font-weight: 600; }
.v-inconclusive { color: #666; }
"""

_VERDICT_WORDS = ("helps", "hurts", "inconclusive", "holds", "contradicted", "worse", "better")


@dataclass
class Document:
    """Headings, paragraphs, tables and figures, rendered as Markdown and as one HTML file.

    Inline text may use `backticks` for code. Figures are PNG files in the output folder:
    Markdown links them by file name, HTML embeds them as base64 data URIs.
    """

    title: str
    blocks: list[tuple[str, Any]] = field(default_factory=list)

    def heading(self, text: str, level: int = 2) -> None:
        """A section heading (level 2 or 3; the title is level 1)."""
        self.blocks.append(("heading", (level, text)))

    def paragraph(self, text: str) -> None:
        """A paragraph of plain text."""
        self.blocks.append(("paragraph", text))

    def note(self, text: str) -> None:
        """A highlighted remark (a caveat the reader must not miss)."""
        self.blocks.append(("note", text))

    def bullets(self, items: Sequence[str]) -> None:
        """A bulleted list."""
        if items:
            self.blocks.append(("bullets", list(items)))

    def table(
        self, header: Sequence[str], rows: Sequence[Sequence[Any]], caption: str | None = None
    ) -> None:
        """A table of already formatted cells."""
        cells = [[_cell(v) for v in row] for row in rows]
        self.blocks.append(("table", (list(header), cells, caption)))

    def figure(self, path: str | Path, caption: str) -> None:
        """A PNG figure (which must exist in the folder the document is written to)."""
        self.blocks.append(("figure", (Path(path), caption)))

    def gallery(self, items: Sequence[tuple[str | Path, str]], columns: int = 3) -> None:
        """Several PNG figures side by side (2 or 3 per row in HTML; one after another in
        Markdown)."""
        if items:
            figs = [(Path(p), c) for p, c in items]
            self.blocks.append(("gallery", (figs, 2 if columns <= 2 else 3)))

    def figures(self) -> list[Path]:
        """Paths of every figure in the document."""
        out = []
        for kind, value in self.blocks:
            if kind == "figure":
                out.append(value[0])
            elif kind == "gallery":
                out += [p for p, _ in value[0]]
        return out

    def to_markdown(self) -> str:
        """The document as GitHub-flavoured Markdown (figures linked by file name)."""
        out = [f"# {self.title}", ""]
        for kind, value in self.blocks:
            if kind == "heading":
                level, text = value
                out += ["#" * level + " " + text, ""]
            elif kind == "paragraph":
                out += [value, ""]
            elif kind == "note":
                out += ["> **Note.** " + value, ""]
            elif kind == "bullets":
                out += [f"- {item}" for item in value] + [""]
            elif kind == "table":
                header, rows, caption = value
                if caption:
                    out += [f"*{caption}*", ""]
                out.append("| " + " | ".join(_md_escape(h) for h in header) + " |")
                out.append("|" + "|".join(" --- " for _ in header) + "|")
                out += ["| " + " | ".join(_md_escape(c) for c in row) + " |" for row in rows]
                out.append("")
            elif kind in ("figure", "gallery"):
                for path, caption in [value] if kind == "figure" else value[0]:
                    out += [f"![{path.stem}]({path.name})", "", f"*{caption}*", ""]
        return "\n".join(out).rstrip() + "\n"

    def to_html(self, folder: str | Path) -> str:
        """The document as one self-contained HTML page (figures read from `folder`)."""
        base = Path(folder)
        body = [f"<h1>{_inline(self.title)}</h1>"]
        for kind, value in self.blocks:
            if kind == "heading":
                level, text = value
                body.append(f"<h{level}>{_inline(text)}</h{level}>")
            elif kind == "paragraph":
                body.append(f"<p>{_inline(value)}</p>")
            elif kind == "note":
                body.append(f'<div class="note"><b>Note.</b> {_inline(value)}</div>')
            elif kind == "bullets":
                items = "".join(f"<li>{_inline(item)}</li>" for item in value)
                body.append(f"<ul>{items}</ul>")
            elif kind == "table":
                header, rows, caption = value
                if caption:
                    body.append(f'<p class="caption">{_inline(caption)}</p>')
                head = "".join(f"<th>{_inline(h)}</th>" for h in header)
                trs = "".join("<tr>" + "".join(_td(c) for c in row) + "</tr>" for row in rows)
                body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{trs}</tbody></table>")
            elif kind == "figure":
                body.append(_html_figure(base, *value))
            elif kind == "gallery":
                figs, columns = value
                inner = "".join(_html_figure(base, p, c) for p, c in figs)
                body.append(f'<div class="gallery cols-{columns}">{inner}</div>')
        return (
            '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f"<title>{html.escape(self.title)}</title><style>{_CSS}</style></head><body>\n"
            + "\n".join(body)
            + "\n</body></html>\n"
        )

    def write(self, folder: str | Path) -> tuple[Path, Path]:
        """Write report.md and report.html into `folder`; returns their paths."""
        out = Path(folder)
        out.mkdir(parents=True, exist_ok=True)
        md = out / "report.md"
        md.write_text(self.to_markdown())
        page = out / "report.html"
        page.write_text(self.to_html(out))
        return md, page


def _html_figure(base: Path, path: Path, caption: str) -> str:
    data = base64.b64encode((base / path.name).read_bytes()).decode("ascii")
    return (
        f'<figure><img alt="{html.escape(path.stem)}" src="data:image/png;base64,{data}">'
        f"<figcaption>{_inline(caption)}</figcaption></figure>"
    )


def _cell(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return num(value)
    return str(value)


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _inline(text: str) -> str:
    escaped = html.escape(text)
    escaped = re.sub(r"`([^`]+)`", r"<code>\1</code>", escaped)
    return re.sub(r"\*\*([^*]+)\*\*", r"<b>\1</b>", escaped)


def _td(text: str) -> str:
    for word in _VERDICT_WORDS:
        if text == word or text.startswith(word + " ") or text.startswith(word + ":"):
            css = {"holds": "helps", "better": "helps", "contradicted": "hurts", "worse": "hurts"}
            return f'<td class="v-{css.get(word, word)}">{_inline(text)}</td>'
    return f"<td>{_inline(text)}</td>"


def num(value: float | None, digits: int = 4) -> str:
    """A number for a table: `digits` significant digits, '–' for None or non-finite."""
    if value is None or not math.isfinite(value):
        return "–"
    return f"{value:.{digits}g}"


def format_ci(interval: Any, digits: int = 4) -> str:
    """'1.905 [1.898, 1.912] (n=3)', or '1.905 (n=1, no CI)' for a degenerate interval."""
    est = num(interval.estimate, digits)
    if interval.degenerate:
        return f"{est} (n={interval.n}, no CI)"
    return f"{est} [{num(interval.low, digits)}, {num(interval.high, digits)}] (n={interval.n})"


def format_p(p: float | None) -> str:
    """A p-value for a table ('undefined' when the test could not be run)."""
    if p is None or not math.isfinite(p):
        return "undefined"
    return f"{p:.2g}"


def write_csv(path: Path, rows: Sequence[Mapping[str, Any]]) -> Path:
    """Rows of dicts as a CSV file (header from the first row; an empty file for no rows)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        if not rows:
            handle.write("")
            return path
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def params_text(params: Mapping[str, Any]) -> str:
    """'lr=0.0002, p_mix=0.5': params in one line, floats to 4 significant digits."""
    parts = []
    for key, value in params.items():
        parts.append(f"{key}={num(value) if isinstance(value, float) else value}")
    return ", ".join(parts)
