"""``report.pdf``: the HTML report printed by headless Chromium, one section per page (the CSS's
``@media print`` rules), for the review package.

Chromium runs with a throw-away profile, no network services, no GPU and no sandbox (it usually runs as
root in CI containers). The PDF is printed to a temporary file next to the target and renamed when
complete (atomic). Chromium stamps the print time into the PDF's ``/CreationDate`` and ``/ModDate``;
:func:`write_pdf` replaces both with ``date`` (the run date) when given, so the same report printed on the
same day gives the same bytes. Nothing else in the file depends on the time.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from etdeploy.errors import OutputExistsError, ReportError

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run", "--no-pdf-header-footer")
_DATE = re.compile(rb"/(CreationDate|ModDate) \(D:\d{14}([^)]*)\)")


def find_chromium() -> str | None:
    """The path of a Chromium (or Chrome) executable on ``PATH``, or ``None``."""
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    return None


def _stamp_dates(pdf: bytes, date: str) -> bytes:
    """Both PDF dates set to ``date`` (``YYYY-MM-DD``) at 00:00:00, same length (the xref offsets stay valid)."""
    digits = date.replace("-", "")
    if not re.fullmatch(r"\d{8}", digits):
        raise ReportError(f"run date {date!r} is not YYYY-MM-DD")
    return _DATE.sub(lambda m: b"/" + m.group(1) + b" (D:" + digits.encode() + b"000000" + m.group(2) + b")", pdf)


def write_pdf(html_path: str | os.PathLike, pdf_path: str | os.PathLike, *, date: str | None = None,
              chromium: str | None = None, timeout_s: float = 180.0) -> Path:
    """Print ``html_path`` to ``pdf_path`` (refused if it exists) with headless Chromium; returns the path.

    :class:`ReportError` when Chromium is missing, fails or writes no PDF.
    """
    html_path, pdf_path = Path(html_path).resolve(), Path(pdf_path)
    if pdf_path.exists():
        raise OutputExistsError("PDF exists; choose a new path", pdf_path)
    if not html_path.is_file():
        raise ReportError("HTML report does not exist", html_path)
    chromium = chromium or find_chromium()
    if chromium is None:
        raise ReportError("no Chromium on PATH (install the Debian package 'chromium' to get report.pdf)")
    with tempfile.TemporaryDirectory(prefix="etdeploy-pdf-") as profile:
        tmp_pdf = Path(profile) / "report.pdf"
        try:
            done = subprocess.run([chromium, *CHROMIUM_FLAGS, f"--user-data-dir={Path(profile) / 'profile'}",
                                   f"--print-to-pdf={tmp_pdf}", html_path.as_uri()],
                                  capture_output=True, timeout=timeout_s, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise ReportError(f"Chromium could not print the report: {exc}", html_path) from exc
        if done.returncode != 0 or not tmp_pdf.is_file() or tmp_pdf.stat().st_size == 0:
            tail = done.stderr.decode("utf-8", "replace").strip().splitlines()[-3:]
            raise ReportError(f"Chromium wrote no PDF (exit {done.returncode}): {' | '.join(tail)}", html_path)
        data = tmp_pdf.read_bytes()
    if date is not None:
        data = _stamp_dates(data, date)
    from etdeploy.fileio import atomic_write_bytes

    atomic_write_bytes(pdf_path, data)
    return pdf_path


__all__ = ["CHROMIUM_FLAGS", "find_chromium", "write_pdf"]
