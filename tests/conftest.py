"""Settings every test process shares.

API secrets are sealed at rest with a secrets key ring (exchange.credentials). The tests use
one fixed ring through the environment, so that in-process gateways, `exchange admin` and the
subprocesses they start all seal and open with the same key.
"""

from __future__ import annotations

import base64
import os

from exchange import credentials

TEST_KEY_RING = "test1:" + base64.b64encode(bytes(range(32))).decode()

os.environ.setdefault(credentials.KEY_ENV, TEST_KEY_RING)
