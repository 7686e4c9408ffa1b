"""The vqkeras audio codec: WAV <-> ``.vqz`` through a residual-VQ VQ-VAE.

`compress` and `decompress` are the entry points (the ``vqkeras compress`` /
``vqkeras decompress`` commands call them). The byte format is in
`vqkeras.codec.container` (documented in ``docs/format.md``), the entropy
coder in `vqkeras.codec.entropy`, model bundles in
`vqkeras.codec.codec_model`.
"""

from vqkeras.codec.pipeline import compress, decompress

__all__ = ["compress", "decompress"]
