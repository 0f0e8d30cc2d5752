"""The release gate (AML.M0000, AML.M0001, AML.M0017): ``atlasguard release-check``.

What an organisation should keep back when it publishes code, packages or apps:
model weights, data sets, notebook outputs, architecture settings, internal
hosts and storage locations, image metadata, listed terms and credentials.
See :mod:`atlasguard.release.check`.
"""
