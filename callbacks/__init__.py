"""Callbacks: things that watch a run (writers of generated images, sub-classes, metrics, grids)."""
