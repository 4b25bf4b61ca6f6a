"""The bottom layer: where things live (paths) and how files are written (atomically) and checked."""
