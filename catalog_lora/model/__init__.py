"""The base model and its precision: the one model loader (GGUF, Hub ids, 4-bit/8-bit, the precision
chosen and why), the CPU int8 path, the libraries' harmless messages filtered, and the one rule that
cuts length-ordered rows into batches (training and the engine).

Imports no other room of the core.
"""
