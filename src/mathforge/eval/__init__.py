"""Evaluation: sampling runs on benchmarks turned into metrics (pass@k, maj@k, RM@k) and reports.

``evaluate`` (in :mod:`mathforge.eval.runner`) imports the model stack when called, so this
package stays light for stages that only read runs.
"""

from mathforge.eval.config import EvalConfig

__all__ = ["EvalConfig"]
