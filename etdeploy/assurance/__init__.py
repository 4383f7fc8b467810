"""V&V evidence for a review board (docs/method.md §12): statistics, every form of the model on the same
images, robustness under rover-camera perturbations, explanation stability, objectives traceability,
acceptance criteria and problem reports. Import the modules directly (``etdeploy.assurance.stats``)."""
