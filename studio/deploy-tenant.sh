#!/usr/bin/env bash
# Deploy a new tenant with isolated resources (seed pattern 18):
#   ./studio/deploy-tenant.sh --tenant-id acme-corp --domain acme.studio.kailash.ai \
#       --database-schema acme --redis-db 2
# Creates the tenant's storage (a PostgreSQL schema and the tenant's own database role when
# KAILASH_DATABASE_URL is set, else SQLite under KAILASH_HOME), its Redis database for shared
# counters, and prints its API key once. With --domain the tenant is served only under that
# host name. --grant/--revoke/--capabilities set what its nodes may touch (default: no host
# processes, no host environment); --cpu-seconds/--memory-limit/--run-timeout its limits. Serve it with `kailash serve`. Python to use: $KAILASH_PYTHON (default: python3).
set -euo pipefail
exec "${KAILASH_PYTHON:-python3}" -m kailash.cli tenant create "$@"
