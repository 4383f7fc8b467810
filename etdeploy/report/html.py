"""Self-contained HTML building blocks (inline CSS, images as data URIs, no network), escaping by default.

Every value interpolated into markup goes through :func:`esc` unless it is :class:`Raw` (markup this
module or a section built itself). Sections build their HTML with :func:`markup`, whose template is
trusted code and whose values are escaped: a class name such as ``<img src=x onerror=alert(1)>``
(an ImageFolder folder name) appears as text, never as markup.
"""

from __future__ import annotations

import base64
import html
import io
import math
from collections.abc import Iterable
from typing import Any

CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:0;color:#1d2733;background:#f4f6f8}
header{background:#14213d;color:#fff;padding:18px 32px}
header h1{margin:0;font-size:24px} header p{margin:4px 0 0;color:#c9d3e0}
main{padding:16px 32px;max-width:1200px}
section{background:#fff;border-radius:8px;padding:12px 20px;margin:14px 0;box-shadow:0 1px 3px rgba(0,0,0,.08)}
h2{font-size:19px;border-bottom:2px solid #fca311;padding-bottom:4px}
h3{font-size:15px;margin-bottom:4px}
table{border-collapse:collapse;font-size:13px;margin:6px 0}
th,td{border:1px solid #d5dbe3;padding:3px 8px;text-align:right}
th{background:#e8edf3} td.l,th.l{text-align:left}
.cards{display:flex;flex-wrap:wrap;gap:12px}
.card{background:#eef3f9;border-radius:6px;padding:10px 14px;min-width:170px}
.card b{display:block;font-size:20px}
.ok{color:#1b7f3b;font-weight:bold} .bad{color:#b3261e;font-weight:bold} .muted{color:#667}
img{max-width:100%} .grid{display:flex;flex-wrap:wrap;gap:10px} .grid figure{margin:0;width:260px}
figcaption{font-size:12px;color:#445} code{background:#eef;padding:0 3px}
.verdict-pass b{color:#1b7f3b} .verdict-fail b,.verdict-incomplete b{color:#b3261e}
@page{size:A4;margin:12mm}
@media print{body{background:#fff} main{padding:0;max-width:none} header{padding:8px 0;background:#fff;color:#000}
header p{color:#333} header .nav{display:none} section{box-shadow:none;padding:0;margin:0;break-before:page}
section:first-of-type{break-before:auto} tr,figure,img{break-inside:avoid} code{word-break:break-all}
table{font-size:10px}}
"""


class Raw(str):
    """Markup that must not be escaped (built by this module or a section from escaped parts)."""


def esc(value: Any) -> Raw:
    """``value`` as HTML text: :class:`Raw` passes through, anything else is ``str()``-ed and escaped."""
    if isinstance(value, Raw):
        return value
    return Raw(html.escape(str(value), quote=True))


def markup(template: str, *args: Any, **kwargs: Any) -> Raw:
    """``template.format(...)`` with every argument escaped (:class:`Raw` arguments kept as they are).

    Format specs apply to the value before escaping: ``markup("<b>{:.3f}</b>", 0.5)``.
    """
    def prepare(value: Any) -> Any:
        if isinstance(value, Raw):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return value  # numbers carry no markup; keep them formattable
        return esc(value)

    return Raw(template.format(*(prepare(a) for a in args), **{k: prepare(v) for k, v in kwargs.items()}))


def join(parts: Iterable[Any], sep: str = "") -> Raw:
    """Concatenate markup parts (non-Raw parts are escaped)."""
    return Raw(sep.join(esc(p) for p in parts))


def fmt(value: Any, digits: int = 4) -> str:
    """A table cell's text: thousands separators for ints, 4 significant digits for floats, n/a for None."""
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if math.isnan(value):
            return "n/a"
        if abs(value) >= 1e5 or (0 < abs(value) < 1e-3):
            return f"{value:.3e}"
        return f"{value:.{digits}g}"
    return str(value)


def _cell(value: Any) -> Raw:
    return value if isinstance(value, Raw) else esc(fmt(value))


def table(header: Iterable[Any], rows: Iterable[Iterable[Any]], left: int = 1) -> Raw:
    """A table; the first ``left`` columns are left-aligned. Cells are escaped unless :class:`Raw`."""
    head = "".join(f"<th class='l'>{esc(h)}</th>" if i < left else f"<th>{esc(h)}</th>"
                   for i, h in enumerate(header))
    body = []
    for row in rows:
        cells = "".join(f"<td class='l'>{_cell(c)}</td>" if i < left else f"<td>{_cell(c)}</td>"
                        for i, c in enumerate(row))
        body.append(f"<tr>{cells}</tr>")
    return Raw(f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>")


def verdict(ok: bool, yes: str = "pass", no: str = "fail") -> Raw:
    return Raw(f"<span class='ok'>{esc(yes)}</span>" if ok else f"<span class='bad'>{esc(no)}</span>")


def card(label: Any, value: Any, note: Any = "") -> Raw:
    return Raw(f"<div class='card'><span class='muted'>{esc(label)}</span><b>{esc(value)}</b>{esc(note)}</div>")


def png_data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def figure_png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight", metadata={"Software": None})
    import matplotlib.pyplot as plt

    plt.close(fig)
    return buf.getvalue()


def img(png: bytes, alt: Any) -> Raw:
    return Raw(f"<img alt='{esc(alt)}' src='{png_data_uri(png)}'>")


def page(title: Any, subtitle: Any, sections: list[tuple[str, str, Raw]]) -> str:
    """The whole document; ``sections`` are ``(id, title, body markup)``."""
    nav = " · ".join(f"<a href='#{esc(sid)}' style='color:#fca311'>{esc(t)}</a>" for sid, t, _ in sections)
    body = "".join(f"<section id='{esc(sid)}'><h2>{esc(t)}</h2>{esc(content)}</section>"
                   for sid, t, content in sections)
    return (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{esc(title)}</title>"
            f"<style>{CSS}</style></head><body><header><h1>{esc(title)}</h1><p>{esc(subtitle)}</p>"
            f"<p class='nav' style='font-size:13px'>{nav}</p></header><main>{body}</main></body></html>\n")
