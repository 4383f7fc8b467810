"""The commented default TOML (`etdeploy config init`) states exactly the dataclass defaults."""

from __future__ import annotations

import dataclasses
import re
import tomllib

from etdeploy.pipeline.config import DEFAULT_TOML, RunConfig, config_from_dict, toml_key


def test_default_toml_parses_to_the_dataclass_defaults():
    assert config_from_dict(tomllib.loads(DEFAULT_TOML)) == RunConfig()


def test_default_toml_mentions_every_key():
    sections = {None: RunConfig}
    sections.update({f.name: f.default_factory for f in dataclasses.fields(RunConfig)
                     if f.default_factory is not dataclasses.MISSING})
    current = None
    seen: dict[str | None, set[str]] = {}
    for line in DEFAULT_TOML.splitlines():
        header = re.match(r"^\[(\w+)\]", line)
        if header:
            current = header.group(1)
            continue
        key = re.match(r"^#?\s*(\w+)\s*=", line)
        if key:
            seen.setdefault(current, set()).add(key.group(1))
    for section, cls in sections.items():
        names = {toml_key(f.name) for f in dataclasses.fields(cls)} - (set(sections) - {None} if section is None
                                                                          else set())
        assert names == seen.get(section, set()), section
