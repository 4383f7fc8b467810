"""Minimal self-contained HTML building blocks (inline CSS, images as data URIs, no network)."""

from __future__ import annotations

import base64
import html
import io
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
"""


def esc(value: Any) -> str:
    return html.escape(str(value))


def fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if value != value:
            return "n/a"
        if abs(value) >= 1e5 or (0 < abs(value) < 1e-3):
            return f"{value:.3e}"
        return f"{value:.{digits}g}"
    return str(value)


def table(header: Iterable[str], rows: Iterable[Iterable[Any]], left: int = 1) -> str:
    head = "".join(f"<th class='l'>{esc(h)}</th>" if i < left else f"<th>{esc(h)}</th>"
                   for i, h in enumerate(header))
    body = []
    for row in rows:
        cells = "".join(f"<td class='l'>{c if isinstance(c, Raw) else esc(fmt(c))}</td>" if i < left else
                        f"<td>{c if isinstance(c, Raw) else esc(fmt(c))}</td>" for i, c in enumerate(row))
        body.append(f"<tr>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


class Raw(str):
    """HTML that must not be escaped."""


def verdict(ok: bool, yes: str = "pass", no: str = "fail") -> Raw:
    return Raw(f"<span class='ok'>{esc(yes)}</span>" if ok else f"<span class='bad'>{esc(no)}</span>")


def card(label: str, value: str, note: str = "") -> str:
    return f"<div class='card'><span class='muted'>{esc(label)}</span><b>{esc(value)}</b>{esc(note)}</div>"


def png_data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def figure_png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight", metadata={"Software": None})
    import matplotlib.pyplot as plt

    plt.close(fig)
    return buf.getvalue()


def img(png: bytes, alt: str) -> str:
    return f"<img alt='{esc(alt)}' src='{png_data_uri(png)}'>"


def page(title: str, subtitle: str, sections: list[tuple[str, str, str]]) -> str:
    nav = " · ".join(f"<a href='#{sid}' style='color:#fca311'>{esc(t)}</a>" for sid, t, _ in sections)
    body = "".join(f"<section id='{sid}'><h2>{esc(t)}</h2>{content}</section>" for sid, t, content in sections)
    return (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{esc(title)}</title>"
            f"<style>{CSS}</style></head><body><header><h1>{esc(title)}</h1><p>{esc(subtitle)}</p>"
            f"<p style='font-size:13px'>{nav}</p></header><main>{body}</main></body></html>\n")
