"""One scanner per model-file format, all behind :class:`FormatScanner`.

See :mod:`atlasguard.artifacts.formats.base` for the contract.
"""
