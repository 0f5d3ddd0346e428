"""The parts of the synthetic shop (:mod:`shoprank.data.synth` is the entry point): the vocabulary and
taxonomy, the item catalogue, queries with graded judgements, and the click and transaction logs.
"""
