"""Scoring the stored neighbour lists against an archive's own known pairs (evaluate.py)."""
