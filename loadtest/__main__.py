"""`python -m loadtest`: drive a running exchange over its public WebSocket API.

    python -m loadtest --url http://127.0.0.1:8080 --matcher unix:/path/matcher.sock \\
        --rate 4000 --duration 30 --sessions 20 --workers 2 --md-subscribers 2 --out results/
    python -m loadtest --url ... --accounts creds.json --find-max --p99-bound-ms 5

Accounts come from --accounts FILE (api_key/secret pairs), or are created and funded through
the operator's interface: the matcher link (--matcher ADDR) or the gateway's admin HTTP API
(--admin-url URL --admin-token-file FILE); --save-accounts FILE keeps them for later runs.
Exit status: 0 when the run had no errors and no violations, 1 otherwise, 2 on bad usage.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from loadtest import accounts, report
from loadtest.cli import add_load_arguments, find_max_and_report, run_and_report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", required=True, help="gateway base URL, e.g. http://127.0.0.1:8080")
    who = parser.add_mutually_exclusive_group(required=True)
    who.add_argument("--accounts", type=Path, help="JSON file of api_key/secret credentials")
    who.add_argument("--matcher", help="matcher link address to create and fund accounts")
    who.add_argument("--admin-url", help="gateway admin HTTP API (e.g. http://127.0.0.1:8081) "
                     "to create and fund accounts; the token is read from --admin-token-file")
    parser.add_argument("--admin-token-file", type=Path, help="bearer token for --admin-url")
    parser.add_argument("--save-accounts", type=Path, help="write the created credentials here")
    add_load_arguments(parser)
    args = parser.parse_args(argv)

    if args.accounts:
        creds = accounts.load(args.accounts)
    elif args.admin_url:
        if not args.admin_token_file:
            parser.error("--admin-url needs --admin-token-file")
        token = args.admin_token_file.read_text().strip()
        creds = asyncio.run(
            accounts.provision_via_admin_http(args.admin_url, token, args.sessions)
        )
    else:
        creds = asyncio.run(accounts.provision_via_matcher(args.matcher, args.sessions))
    if args.save_accounts and not args.accounts:
        accounts.save(creds, args.save_accounts)
    if len(creds) < args.sessions:
        parser.error(f"--sessions {args.sessions} but only {len(creds)} credentials")

    if args.find_max:
        outcome = find_max_and_report(args, args.url, creds)
        return 0 if outcome.best_rate else 1
    result = run_and_report(args, args.url, creds)
    print(report.result_line(result), flush=True)
    return 0 if result.errors == 0 and result.violations.total == 0 and not result.failures else 1


if __name__ == "__main__":
    sys.exit(main())
