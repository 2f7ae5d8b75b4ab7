"""The rooms of the catalog-lora Space (``app.py`` beside this folder launches it); see ``ui.build_demo``."""
