"""Thin Ray job entrypoints: each ``python -m jobs.<name>`` imports the installed ``shoprank``
package and calls its driver (``ray job submit --working-dir . -- python -m jobs.train ...``).
The logic lives in ``shoprank``; these files only import and call.
"""
