"""End-to-end pipeline: configuration, stages, resumable runner."""

from etdeploy.pipeline.config import RunConfig, demo_config, load_config
from etdeploy.pipeline.runner import run_pipeline

__all__ = ["RunConfig", "demo_config", "load_config", "run_pipeline"]
