"""How a result across splits is read: a win is a mean gain over the baseline larger than the spread of that gain.

One rule for everything that says it: ``training.report``'s verdicts, the colour of ``training.plots.gains``' bars
and the README's read-out (``bench/speed_docs.py``). It imports nothing, so the docs generator reads records
without loading torch or matplotlib.
"""

from __future__ import annotations


def exceeds_spread(record: dict) -> bool:
    """Whether a ``training.report`` record's mean gain exceeds its spread across splits (``gain_std``, one sample
    standard deviation). A record of one split has no spread to exceed: a gain there is not yet told from noise."""
    return record.get("gain") is not None and record.get("gain_std") is not None and record["gain"] > record["gain_std"]
