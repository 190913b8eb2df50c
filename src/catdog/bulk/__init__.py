"""``catdog bulk``: classify millions of photos with Apache Beam (needs ``catdog[bulk]``).

Importing this package imports Beam; the API and the other commands never do.
"""

from catdog.bulk.handler import ClassifierHandler, ModelSpec
from catdog.bulk.pipeline import BulkJob, run

__all__ = ["BulkJob", "ClassifierHandler", "ModelSpec", "run"]
