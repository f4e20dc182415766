"""Baseline of the SCIM benchmark: a plain synchronous scim2-client.

    python bench_client.py http://127.0.0.1:8080 --token secret --creates 1000 --export 10000

1. Creates CREATES users, one request each, and times it.
2. Creates more users, untimed, until the service holds EXPORT users.
3. Times a full export of the users, paged with startIndex and count.

Prints one JSON line: {"creates": n, "create_s": x, "exported": m, "export_s": y}.
User names continue after the users already there, so it can run again on the
same service.
"""

import argparse
import json
import sys
import time

from httpx2 import Client
from scim2_client.engines.httpx2 import SyncSCIMClient
from scim2_models import SearchRequest

CORE = "urn:ietf:params:scim:schemas:core:2.0:User"
ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"


def user_payload(number):
    """The user number N: user-0000N, with a name, an email and an employee number."""
    return {
        "schemas": [CORE, ENTERPRISE],
        "userName": f"user-{number:05d}",
        "name": {"givenName": "Given", "familyName": f"Family{number:05d}"},
        "emails": [{"value": f"user-{number:05d}@example.test", "type": "work", "primary": True}],
        "active": True,
        ENTERPRISE: {"employeeNumber": f"E{number:05d}", "department": "Benchmark"},
    }


def count_users(scim):
    """The number of users the service holds."""
    return scim.query("User", query_parameters=SearchRequest(count=0)).total_results


def create_users(scim, first, count):
    """Create the users number first to first+count-1, one request each."""
    for number in range(first, first + count):
        scim.create("User", user_payload(number))


def export_users(scim, page_size):
    """Read every user, page after page, and return how many distinct ones were read."""
    ids = set()
    start = 1
    while True:
        page = scim.query("User", query_parameters=SearchRequest(start_index=start, count=page_size))
        resources = page.resources or []
        ids.update(resource.id for resource in resources)
        start += len(resources)
        if not resources or start > page.total_results:
            return len(ids)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("url", help="base URL of the service, e.g. http://127.0.0.1:8080")
    parser.add_argument("--token", help="send 'Authorization: Bearer TOKEN'")
    parser.add_argument("--creates", type=int, default=1000, help="users created in the timed step")
    parser.add_argument("--export", type=int, default=10000, help="users the service holds for the export")
    parser.add_argument("--page-size", type=int, default=100, help="count of each page, bounded by the server's maximum")
    args = parser.parse_args()

    headers = {"Authorization": f"Bearer {args.token}"} if args.token else {}
    with Client(base_url=args.url, headers=headers, timeout=60) as http:
        scim = SyncSCIMClient(http)
        scim.discover()
        config = scim.provider.config
        max_results = config.filter.max_results if config and config.filter else None
        page_size = min(args.page_size, max_results) if max_results else args.page_size

        existing = count_users(scim)
        started = time.perf_counter()
        create_users(scim, existing + 1, args.creates)
        create_s = time.perf_counter() - started

        missing = args.export - (existing + args.creates)
        if missing > 0:
            create_users(scim, existing + args.creates + 1, missing)

        started = time.perf_counter()
        exported = export_users(scim, page_size)
        export_s = time.perf_counter() - started

    print(json.dumps({
        "creates": args.creates,
        "create_s": round(create_s, 3),
        "exported": exported,
        "export_s": round(export_s, 3),
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
