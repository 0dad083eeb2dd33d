"""``vec serve``: the store in a browser — survey, exposures on the focal plane, CCDs and their look-alikes,
the review queue — and the one write, an analyst's label (:mod:`vecstore.cli.web.app` says why Starlette
and what is safe; :mod:`~vecstore.cli.web.data` is what each page shows; :mod:`~vecstore.cli.web.thumbs`
the thumbnail cache; :mod:`~vecstore.cli.web.filters` the look-alike filter box)."""
