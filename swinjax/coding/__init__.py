"""Range coding of integer latents and the swinjax file format.

* :mod:`swinjax.coding.backend`: the coder interface and its constriction implementation
  (symbols + per-symbol table rows -> bytes and back, with an escape for out-of-table values).
* :mod:`swinjax.coding.reference`: an independent, slow, pure-Python range coder over the same
  tables, used by the tests as an oracle.
* :mod:`swinjax.coding.container`: the self-describing, validated ``.swj`` container.

Everything here is numpy + constriction only (no JAX): decoding a file needs the tables and the
entropy parameters, never a float model of the distribution.
"""
