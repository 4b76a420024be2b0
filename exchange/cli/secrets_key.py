"""`exchange secrets-key`: make the key ring that seals API secrets at rest.

    exchange secrets-key --out /etc/exchange/secrets.key        # a new file (0600), one key
    exchange secrets-key --id k2                                # print a new line (rotation)

Keep the file outside the data dir (whoever reads the data dir must not find the key beside
it). Point the gateway and `exchange admin` at it with --secrets-key-file or
$EXCHANGE_SECRETS_KEY_FILE. Rotation: put a new line first in the file, restart the gateways,
re-issue the API keys created under the old line, then remove it (docs/SECURITY.md).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from exchange.credentials import KeyRingError, new_key_line, write_new_key_file


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, default=None,
                        help="create this key ring file (refuses to overwrite one)")
    parser.add_argument("--id", default="k1", help="the key's id (default k1)")


def run(args: argparse.Namespace) -> int:
    try:
        if args.out is None:
            print(new_key_line(args.id))
        else:
            write_new_key_file(args.out, args.id)
    except (KeyRingError, OSError) as exc:
        print(f"exchange secrets-key: {exc}", file=sys.stderr)
        return 1
    return 0
