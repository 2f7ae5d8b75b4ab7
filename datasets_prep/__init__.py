"""Catalog data preparation: real catalog formats → canonical, leak-free splits with a taxonomy and a card."""
