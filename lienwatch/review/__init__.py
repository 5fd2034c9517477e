"""The review: what the loss-mitigation team works from each morning.

- :mod:`lienwatch.review.decisions`: the analysts' decisions (``lienwatch review ...``)
  and what they do to a night: held letters, hardship applications, promises to pay;
- :mod:`lienwatch.review.page`: the night's queue and the review page's data, read
  from the warehouse;
- :mod:`lienwatch.review.render`: the page itself, one self-contained HTML file;
- :mod:`lienwatch.review.exports`: ``call_list.csv``, ``queue.csv`` and ``queue.xlsx``.

The night's step that writes them is :mod:`lienwatch.steps.review`; the pure parts are
in :mod:`transforms.review` and :mod:`transforms.cases`.
"""
