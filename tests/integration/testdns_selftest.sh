#!/usr/bin/env bash
# The test DNS server (tests/tools/testdns.py) checked against real clients (dig, kdig): the
# other integration tests rely on it as upstream and as the `resolver` for Redis hostnames.
exec bash "$(dirname "$0")/../tools/test_testdns.sh"
