"""The exceptions circhat raises for bad input, each with a message that says what went wrong and where."""

from __future__ import annotations


class MetadataError(ValueError):
    """A metadata file that cannot be read as a catalog; the message says what and where."""


class SchemaError(ValueError):
    """A catalog schema (``schema.json``) that cannot be used; the message says what to fix."""
