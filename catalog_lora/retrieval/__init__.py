"""The nearest training examples: the bundled sentence model, the ChromaDB reference index (records as
entries, built and searched), the neighbours' vote of a head and the examples shown in a prompt.

Imports from the core: ``records``, ``runs``. Knows nothing of the model or of answering.
"""
