"""Evaluation: resumable run directories of per-problem records, metrics, reports.

``evaluate`` (in :mod:`mathforge.eval.runner`) imports the model stack when called, so this
package stays light for stages that only read or write records.
"""

from mathforge.eval.records import Execution, ProblemRecord, SampleRecord
from mathforge.eval.store import RunDirectory, SampleStore

__all__ = ["Execution", "ProblemRecord", "RunDirectory", "SampleRecord", "SampleStore"]
