"""A strict fake of Omni's connector-manager for tests and benchmarks (see `manager.py`)."""

from tests.omni_double.manager import Extraction, FakeManager, FakeRun, FakeSource, Recorded
from tests.omni_double.validate import Violation

__all__ = ["Extraction", "FakeManager", "FakeRun", "FakeSource", "Recorded", "Violation"]
