"""Utilities: export of workflows to other formats and environments."""
