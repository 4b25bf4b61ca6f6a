"""Running: run specs, the papermill run notebook, run records, the grid runner and per-run stages."""
