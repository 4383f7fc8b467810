"""report.pdf: headless Chromium prints report.html, one section per page, with every objective id in its
text (pdftotext). Skipped only where Chromium or poppler-utils is absent (.ci/run installs both)."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from etdeploy.assurance.objectives import OBJECTIVES
from etdeploy.errors import OutputExistsError
from etdeploy.report import write_report
from etdeploy.report.pdf import find_chromium, write_pdf
from etdeploy.report.render import render_html
from tests.test_assurance_report import data_stage, forms, parity, record


@pytest.fixture(scope="module")
def printed(tmp_path_factory):
    if find_chromium() is None:
        pytest.skip("chromium is not installed (.ci/run installs the Debian package 'chromium')")
    if shutil.which("pdftotext") is None or shutil.which("pdfinfo") is None:
        pytest.skip("pdftotext/pdfinfo are not installed (.ci/run installs the Debian package 'poppler-utils')")
    out = tmp_path_factory.mktemp("pdf")
    rec = record({"data": data_stage(), "evaluate": forms(8), "parity": parity(5e-4)})
    write_report(rec, out)
    write_pdf(out / "report.html", out / "report.pdf", date=rec.stamp["run_date"])
    return rec, out


def test_pdf_has_a_page_per_section_and_every_objective_id(printed):
    rec, out = printed
    pdf = out / "report.pdf"
    assert pdf.read_bytes().startswith(b"%PDF")
    info = subprocess.run(["pdfinfo", str(pdf)], capture_output=True, text=True, check=True).stdout
    pages = int(re.search(r"^Pages:\s+(\d+)", info, re.MULTILINE).group(1))
    sections = render_html(rec).count("<section id=")
    assert sections >= 6 and pages >= sections
    text = subprocess.run(["pdftotext", "-layout", str(pdf), "-"], capture_output=True, text=True, check=True).stdout
    for o in OBJECTIVES:
        assert o.id in text, o.id
    assert "FAIL" in text and "Objectives traceability" in text and "Configuration index (provenance)" in text


def test_pdf_dates_are_the_run_date_and_printing_again_gives_the_same_bytes(printed, tmp_path):
    rec, out = printed
    data = (out / "report.pdf").read_bytes()
    assert b"/CreationDate (D:20261202000000" in data and b"/ModDate (D:20261202000000" in data
    again = write_pdf(out / "report.html", tmp_path / "again.pdf", date=rec.stamp["run_date"])
    assert again.read_bytes() == data


def test_existing_pdf_is_refused(printed):
    _, out = printed
    with pytest.raises(OutputExistsError):
        write_pdf(out / "report.html", out / "report.pdf")
