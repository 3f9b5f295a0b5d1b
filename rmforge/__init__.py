"""rmforge: data synthesis and preference curation for reward models."""

__version__ = "0.1.0"
