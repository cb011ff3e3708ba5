#!/usr/bin/env bash
# The submission folders a pull request changes, one per line: submissions/<id> for every file that differs
# between the merge base with BASE and HEAD, keeping only folders that still hold a submission.yaml
# (a deleted submission has nothing to validate).
#   bash scripts/changed-submissions.sh origin/main
set -euo pipefail
base="${1:?usage: changed-submissions.sh BASE_REF}"
git diff --name-only --no-renames "$(git merge-base "$base" HEAD)" HEAD -- submissions/ \
  | awk -F/ 'NF >= 3 && $2 !~ /^[._]/ {print $1 "/" $2}' \
  | sort -u \
  | while IFS= read -r d; do [ -f "$d/submission.yaml" ] && echo "$d"; done || true
