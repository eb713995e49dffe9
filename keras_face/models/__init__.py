"""Backbones (being written)."""
