"""The nearest training examples: the bundled sentence model, the ChromaDB reference index (records as
entries, built and searched), the neighbours' vote of a head and the examples shown in a prompt; TF-IDF vectors
from plain files and the training products nearest by them (a description head's pooled candidates).

Imports from the core: ``records``, ``runs`` and ``model.batching`` (of the model room only the rule
that cuts batches by tokens: the sentence model's batches are cut as the engine's are). Knows nothing
of the base model or of answering.
"""
