"""One module per dataset format, each a ``load_<format>(path, salt, encoding)`` returning a ``LoadResult``.

:mod:`shoprank.data.loaders` maps format names to these loaders; :mod:`.common` holds what they share,
:mod:`.rawtext` reads a file's bytes (archives, encodings) and :mod:`.delimited` parses delimited text.
"""
