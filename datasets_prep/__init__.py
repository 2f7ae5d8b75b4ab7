"""Catalog data preparation: real catalog formats → canonical, leak-free splits with a taxonomy and a card.

- :mod:`datasets_prep.prepare`: the pipeline and its command line, ``prepare`` / ``prepare_sample``;
- :mod:`datasets_prep.readers`, :mod:`datasets_prep.clean`, :mod:`datasets_prep.split`,
  :mod:`datasets_prep.card`: reading, cleaning, splitting, the dataset card;
- one module per source format: :mod:`~datasets_prep.bodywash`, :mod:`~datasets_prep.bigbasket`,
  :mod:`~datasets_prep.flipkart`, :mod:`~datasets_prep.instacart`, :mod:`~datasets_prep.amazon_reviews23`,
  :mod:`~datasets_prep.amazontitles`, :mod:`~datasets_prep.promptcloud`, :mod:`~datasets_prep.generic`.

Reading a prepared folder (``load_split``, ``load_taxonomy``, the ``report.json`` accounting) is in
the core, :mod:`catalog_lora.records.dataset_files`; publishing it is :mod:`model_cards.dataset_repo`.
"""
