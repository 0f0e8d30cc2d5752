"""Training-data sanitization (AML.M0007): audit a data set before training on it."""

from atlasguard.data.audit import CHECKS, AuditReport, Finding, audit
from atlasguard.data.load import Table, read_table

__all__ = ["CHECKS", "AuditReport", "Finding", "Table", "audit", "read_table"]
