#!/usr/bin/env bash
# The GPU check as bench/README.md runs it (one H100/H200, under 8 minutes); OUT (default gpu_check_out) gets the tables.
exec "${PYTHON:-python}" "$(dirname "$0")/gpu_check.py" --device cuda --budget_s 470 --out "${1:-gpu_check_out}"
