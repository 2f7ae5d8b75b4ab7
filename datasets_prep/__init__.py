"""Catalog data preparation: real catalog formats → canonical, leak-free splits with a taxonomy and a card.

- :mod:`datasets_prep.prepare`: the pipeline, its command line and ``prepare`` / ``prepare_sample`` /
  ``load_split`` / ``load_taxonomy`` / ``publish``;
- :mod:`datasets_prep.readers`, :mod:`datasets_prep.clean`, :mod:`datasets_prep.split`,
  :mod:`datasets_prep.report`, :mod:`datasets_prep.card`: reading, cleaning, splitting, accounting, the card;
- one module per source format: :mod:`~datasets_prep.bodywash`, :mod:`~datasets_prep.bigbasket`,
  :mod:`~datasets_prep.flipkart`, :mod:`~datasets_prep.instacart`, :mod:`~datasets_prep.amazon_reviews23`,
  :mod:`~datasets_prep.amazontitles`, :mod:`~datasets_prep.promptcloud`, :mod:`~datasets_prep.generic`.
"""
