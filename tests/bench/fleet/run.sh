#!/bin/sh
# tests/bench/fleet/run.sh [fleetbench options]: the fleet's figures of
# docs/fleet.md ("Figures"), by tests/bench/fleet/fleetbench.c on a private
# PostgreSQL cluster (Debian's postgresql package; pgbench for the write
# load), three and then 10 and 50 cutoverd instances. Not part of make test:
# about 10 minutes, and the figures depend on the machine. `make bench-fleet`
# builds and runs it; options go to fleetbench (--only PART, --changes N,
# --trials N, --lost N, --sim N,N,...); FLEETBENCH_KEEP=1 keeps the
# instances' directories and logs (the path is printed at the end).
set -eu
cd "$(dirname "$0")/../../.."
make --no-print-directory all build/tests/bench/fleet/fleetbench >/dev/null
echo "fleetbench on $(uname -srm), $(nproc) CPUs, $(git rev-parse --short HEAD 2>/dev/null || echo 'no git')"
CUTOVER_BIN_DIR=$(pwd)/build CUTOVER_SRC_DIR=$(pwd) exec build/tests/bench/fleet/fleetbench "$@"
