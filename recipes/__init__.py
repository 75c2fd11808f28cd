"""Recipes shipped with bnnlab (YAML files, one per paper table); installed as ``bnnlab.recipe_files``."""
