"""The feature job: scan → plan → extract (decode + model) → write, per image file."""
