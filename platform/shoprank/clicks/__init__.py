"""The click features: one implementation for offline evaluation and the served ranker.

- :mod:`~shoprank.clicks.text`: query normalisation (compact keys, words, trigrams);
- :mod:`~shoprank.clicks.lookup`: the query-count lookup and its scoring (shares, word and
  nearest-query back-off), shared by the in-memory counts and the store's reader;
- :mod:`~shoprank.clicks.bm25`: BM25 over the catalogue (one of the blend's inputs);
- :mod:`~shoprank.clicks.counts`: :class:`ClickCounts`, the in-memory counts of a click log
  (``shoprank eval --clicks``);
- :mod:`~shoprank.clicks.features`: what one request's counts look like to the features
  (:class:`QueryClicks`), the :class:`ClickFeatureSource` protocol both sources implement
  (:class:`ClickCounts` here, :class:`shoprank.store.reader.StoreClickSource` on the store),
  the feature rows and the learned blend's score.

Nothing here imports ``shoprank.eval``, ``shoprank.serving`` or ``shoprank.store``: all of them
may import this package.
"""
