"""catalog-lora core: one definition of prompts, labels, records and model loading.

Its rooms, each a sub-package whose docstring says what it holds and which other rooms it imports:
``records`` (the records and their words), ``runs`` (run folders and what they say), ``model`` (the
base model and its precision), ``retrieval`` (the nearest training examples), ``inference`` (the
engine: answers from an adapter) and ``catalogs`` (catalog files in, predictions out).
"""
