"""Print ImageGate's OpenAPI document, as the current code builds it (no server, no data).

The settings are the defaults: IMAGEGATE_* variables of the caller's shell are ignored, so
the document (and the types generated from it) is the same on every machine."""

import json
import os
import sys
import tempfile

from imagegate.api.app import create_app
from imagegate.settings import Settings

for name in [name for name in os.environ if name.startswith("IMAGEGATE_")]:
    del os.environ[name]
with tempfile.TemporaryDirectory() as data_dir:
    settings = Settings(data_dir=data_dir, secret_key="x" * 32)  # nothing is signed here
    json.dump(create_app(settings, workers=0).openapi(), sys.stdout, indent=2, sort_keys=True)
