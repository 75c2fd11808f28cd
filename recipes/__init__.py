"""Recipes shipped with bnnlab (YAML files, one per paper table)."""
