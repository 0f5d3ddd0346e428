"""One module per dataset format, each a ``load_<format>(path, salt, encoding)`` returning a ``LoadResult``.

:mod:`shoprank.data.loaders` maps format names to these loaders; :mod:`.common` holds what they share.
"""
