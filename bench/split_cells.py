"""The cells of a bench table over several splits of each config (``bench/mix_forms.py``,
``bench/head_neighbours.py``): results grouped by config, a form's test score as mean ± sd, a gain in points."""

from __future__ import annotations

import statistics


def by_config(results: list[dict]) -> dict[str, list[dict]]:
    """``results`` (each with its ``run`` folder's name, ``<config>-split<seed>``) grouped by config, in order."""
    groups: dict[str, list[dict]] = {}
    for result in results:
        groups.setdefault(result["run"].rsplit("-split", 1)[0], []).append(result)
    return groups


def mean_cell(members: list[dict], form: str) -> str:
    """The mean test score of ``form`` over ``members``, ± its sd when there are several."""
    values = [m[form]["test"] for m in members]
    spread = f" ± {statistics.stdev(values):.3f}" if len(values) > 1 else ""
    return f"{statistics.fmean(values):.3f}{spread}"


def gain_cell(members: list[dict], form: str, against: str) -> str:
    """``form``'s test score minus ``against``'s in points: the mean, then each split's."""
    gains = [100 * (m[form]["test"] - m[against]["test"]) for m in members]
    return f"{statistics.fmean(gains):+.1f} ({', '.join(f'{g:+.1f}' for g in gains)})"
