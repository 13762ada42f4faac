"""mrs-tui: a terminal playlist assistant built on pretrained audio embeddings."""

__version__ = "0.1.0"
