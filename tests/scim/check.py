"""Check a running SCIM 2.0 service against RFC 7643/7644 with scim2-tester.

    python check.py http://127.0.0.1:8080 --token secret

It discovers the service (/ServiceProviderConfig, /ResourceTypes, /Schemas),
then creates, reads, replaces, patches and deletes resources of each resource
type. It prints one line per check that did not succeed and a summary, and
exits 1 when a check found a violation of a MUST (ERROR or CRITICAL), or a
SHOULD too (DEVIATION) with --strict.
"""

import argparse
import sys
from collections import Counter

from httpx2 import Client
from scim2_client.engines.httpx2 import SyncSCIMClient
from scim2_tester import Status
from scim2_tester import check_server

FAILURES = {Status.ERROR, Status.CRITICAL}
# Statuses that are not printed one by one: conforming, or not run.
QUIET = {Status.SUCCESS, Status.COMPLIANT, Status.ACCEPTABLE, Status.SKIPPED}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("url", help="base URL of the service, e.g. http://127.0.0.1:8080")
    parser.add_argument("--token", help="send 'Authorization: Bearer TOKEN'")
    parser.add_argument("--strict", action="store_true", help="fail on deviations from a SHOULD too")
    parser.add_argument("--tag", action="append", help="run only the checks with this tag (repeatable)")
    parser.add_argument("--verbose", action="store_true", help="print every check")
    args = parser.parse_args()

    headers = {"Authorization": f"Bearer {args.token}"} if args.token else {}
    with Client(base_url=args.url, headers=headers, timeout=30) as http:
        results = check_server(
            SyncSCIMClient(http),
            include_tags=set(args.tag) if args.tag else None,
        )

    failing = FAILURES | ({Status.DEVIATION} if args.strict else set())
    for result in results:
        if args.verbose or result.status not in QUIET:
            where = f"{result.resource_type}: " if result.resource_type else ""
            print(f"{result.status.name:<10} {where}{result.title} - {result.reason or ''}")

    counts = Counter(result.status.name for result in results)
    summary = ", ".join(f"{count} {name.lower()}" for name, count in sorted(counts.items()))
    failed = sum(1 for result in results if result.status in failing)
    print(f"{len(results)} checks: {summary}")
    print("FAILED" if failed else "OK")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
