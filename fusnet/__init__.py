"""fusnet: Multi-FusNet fine-grained hashing for image retrieval."""

__version__ = "0.1.0"
