"""Run folders and what they say: the files of a run folder (local or on the Hub) and ``RunInfo``,
the citation of an adapter, the metrics tables in markdown.

Imports from the core: ``records``.
"""
