"""Entropy models (JAX) and the integer coding tables they are turned into (numpy).

The JAX modules here (quantization, factorized prior, Gaussian conditional, ChARM, the masked
grouped model) compute likelihoods for training and entropy parameters for coding.
:mod:`swinjax.entropy.tables` is numpy-only: it turns trained distributions into integer CDF
tables once, by an explicit step, and those tables are what the range coder
(:mod:`swinjax.coding`) and the decoder use (docs/file-format.md).
"""
