"""The pipeline's package stage honours ``[package]`` (enabled, vectors) from the run configuration."""

from types import SimpleNamespace

from etdeploy.pipeline.config import PackageConfig, RunConfig, config_from_dict
from etdeploy.pipeline.stages.package import describe_package, run_package_stage


def test_package_section_parses_and_stays_out_of_the_dict_at_default():
    assert config_from_dict({"package": {"enabled": False, "vectors": 3}}).package == PackageConfig(False, 3)
    assert "package" not in RunConfig().to_dict()
    assert config_from_dict({"package": {"vectors": 4}}).to_dict()["package"] == {"enabled": True, "vectors": 4}


def test_turned_off_package_stage_records_why_without_touching_the_run(tmp_path):
    ctx = SimpleNamespace(config=config_from_dict({"package": {"enabled": False}}))
    summary = run_package_stage(ctx, tmp_path)
    assert summary == {"skipped": "turned off in the configuration ([package] enabled = false)"}
    assert describe_package(summary).startswith("no bundle: turned off")
    assert list(tmp_path.iterdir()) == []
