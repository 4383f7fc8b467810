"""The method document and its citations: every ``docs/method.md §N`` the code cites must exist.

Docstrings and comments cite the method as ``docs/method.md §6.2`` (one section) or
``docs/method.md §6.1-6.3`` / ``§1-2`` (a range; both ends must exist, and every top-level section in
between). The document's numbered headings (``## 6 ...``, ``### 6.2 ...``) are the citable sections.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "method.md"
CITING_DIRS = ("etdeploy", "benchmarks", "tests")
CITING_FILES = ("README.md",)
TEXT_SUFFIXES = {".py", ".md", ".toml", ".txt"}
THIS_FILE = Path(__file__).resolve()

SECTION = r"\d+[a-z]?(?:\.\d+)?"
HEADING = re.compile(rf"^#{{2,3}} ({SECTION}) \S", re.MULTILINE)
CITATION = re.compile(rf"docs/method\.md(?:\s|#)*§\s*({SECTION})(?:\s*[-–]\s*({SECTION}))?")
# a mention that is not a Markdown link to the whole document ([`docs/method.md`](docs/method.md))
MENTION = re.compile(r"(?<!\[`)(?<!\]\()docs/method\.md")
BARE_REFERENCE = "METHOD" + ".md"  # the team's document outside the repository; cite docs/method.md instead


def citing_files() -> list[Path]:
    files = [ROOT / name for name in CITING_FILES if (ROOT / name).is_file()]
    for folder in CITING_DIRS:
        files += sorted(p for p in (ROOT / folder).rglob("*")
                        if p.is_file() and p.suffix in TEXT_SUFFIXES and "__pycache__" not in p.parts)
    return [p for p in files if p.resolve() != THIS_FILE]


def read(path: Path) -> str:
    return path.read_text(encoding="utf-8", errors="replace")


def headings() -> list[str]:
    return HEADING.findall(read(DOC))


def expand(first: str, last: str | None) -> list[str]:
    """``("6.1", "6.3") -> ["6.1", "6.3"]``; ``("1", "2") -> ["1", "2"]``; ``("3", "6") -> ["3", ..., "6"]``."""
    if not last:
        return [first]
    if first.isdigit() and last.isdigit():
        return [str(n) for n in range(int(first), int(last) + 1)]
    return [first, last]


def citations() -> list[tuple[str, int, str]]:
    """``(file, line, section)`` for every cited section."""
    out = []
    for path in citing_files():
        text = read(path)
        for match in CITATION.finditer(text):
            line = text.count("\n", 0, match.start()) + 1
            for section in expand(match.group(1), match.group(2)):
                out.append((str(path.relative_to(ROOT)), line, section))
    return out


def test_document_has_the_reference_numbering():
    found = headings()
    assert len(found) == len(set(found)), f"duplicate section numbers in {DOC.name}: {found}"
    # the team reference's numbering, which the citations were written against
    for section in ("1", "1b", "2", "3", "4", "5", "6", "6.1", "6.2", "6.3", "7", "8"):
        assert section in found, f"docs/method.md has no section {section}"


def test_every_cited_section_exists():
    cited = citations()
    assert len(cited) >= 15, f"found only {len(cited)} citations: has the citation form changed?"
    existing = set(headings())
    missing = [f"{file}:{line}: §{section}" for file, line, section in cited if section not in existing]
    assert not missing, "citations of sections that docs/method.md does not have:\n" + "\n".join(missing)


def test_every_mention_names_a_section():
    loose = []
    for path in citing_files():
        text = read(path)
        cited_at = {m.start() for m in CITATION.finditer(text)}
        for match in MENTION.finditer(text):
            if match.start() not in cited_at:
                loose.append(f"{path.relative_to(ROOT)}:{text.count(chr(10), 0, match.start()) + 1}")
    assert not loose, "docs/method.md mentioned without a section (write docs/method.md §N):\n" + "\n".join(loose)


def test_no_citation_of_the_external_method_file():
    bare = []
    for path in citing_files():
        for number, line in enumerate(read(path).splitlines(), start=1):
            if BARE_REFERENCE in line:
                bare.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not bare, (f"{BARE_REFERENCE} is not in this repository; cite docs/method.md §N instead:\n"
                      + "\n".join(bare))


def test_paths_in_the_document_exist():
    """Files the document points to (``etdeploy/...``, ``benchmarks/...``, ...) must exist, so it follows renames."""
    paths = set(re.findall(r"`((?:etdeploy|benchmarks|tests|configs|reports|targets)/[^`*{}\s]+)`", read(DOC)))
    assert paths, "no file paths found in docs/method.md"
    missing = sorted(p for p in paths if not (ROOT / p).exists())
    assert not missing, f"docs/method.md points to files that do not exist: {missing}"


def test_expand_ranges():
    assert expand("6.2", None) == ["6.2"]
    assert expand("6.1", "6.3") == ["6.1", "6.3"]
    assert expand("1", "2") == ["1", "2"]
    assert expand("3", "5") == ["3", "4", "5"]
