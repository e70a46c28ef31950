"""compose.yaml: every service's container log rotates (json-file, size-capped), written once as an anchor."""

from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]


def test_every_service_rotates_its_log():
    text = (REPO / "compose.yaml").read_text()
    services = yaml.safe_load(text)["services"]
    assert services
    for name, spec in services.items():
        logging = spec.get("logging")
        assert logging, f"service {name} has no logging options: its container log grows without bound"
        assert logging["driver"] == "json-file"
        assert logging["options"] == {"max-size": "10m", "max-file": "3"}, name
    assert text.count("max-size") == 1  # one definition (the x-logging anchor), referenced by every service
