"""The user guide's own example report (tests/fixtures/guide-report.json), shared by the tests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from otel_neuron.sources.instance import InstanceFacts

GUIDE_REPORT: dict[str, Any] = json.loads(
    (Path(__file__).parent / "fixtures" / "guide-report.json").read_text()
)
# The guide's instance_data: "My_Instance", "i-0011223344556677a", "inf1.xlarge", ...
GUIDE_FACTS = InstanceFacts(**GUIDE_REPORT["instance_data"])
