"""Answering: the inference engine and its paths (generation with its decoding loop and the taxonomy
constraint, the classification head, a description head's choice), what it returns (``Prediction``)
and each label's confidence, and single requests gathered into one model call.

Imports from the core: ``model``, ``records``, ``retrieval``, ``runs``.
"""
