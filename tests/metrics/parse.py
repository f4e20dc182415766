"""Reads an OpenMetrics exposition on standard input with the Prometheus project's own parser
(strict: a malformed line, a missing "# EOF" or a bad type fails), and prints one line per
sample: name, labels as JSON, value."""

import json
import sys

from prometheus_client.openmetrics.parser import text_string_to_metric_families

for family in text_string_to_metric_families(sys.stdin.read()):
    for s in family.samples:
        print(s.name, json.dumps(s.labels, sort_keys=True), s.value)
