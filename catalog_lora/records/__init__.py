"""The records and their words: the canonical record of each task, the task spec, the taxonomy and
the parsing of answers into labels, the prompt templates, and the files of a prepared dataset folder.

Imports no other room of the core: everything else builds on the records.
"""
