"""Every Python block of the README runs as written (in order, one namespace, in a fresh folder)."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.DOTALL)


def test_readme_python_blocks_run_as_written(tmp_path, monkeypatch):
    blocks = python_blocks()
    assert len(blocks) >= 5
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "readme"}
    for index, block in enumerate(blocks):
        try:
            code = compile(block, f"README.md python block {index + 1}", "exec")
            exec(code, namespace)  # noqa: S102 - executing the README is the point
        except Exception as exc:  # name the block that failed
            raise AssertionError(f"README python block {index + 1} failed: {type(exc).__name__}: {exc}\n{block}") \
                from exc
    assert Path(namespace["report_html"]).is_file()
    assert namespace["sliced"].spec.input_size == 64 and namespace["approx"].shape == namespace["res"].shape
