#!/usr/bin/env bash
# CI step for pull requests: `babelmerge validate` on the submission folders the pull request changes; each
# one-line problem becomes an error annotation on its file and the job summary lists them. Exit 1 on a problem.
#   bash scripts/validate-changed.sh origin/main       (BABELMERGE overrides the command, default: babelmerge)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
mapfile -t dirs < <(bash "$here/changed-submissions.sh" "${1:?usage: validate-changed.sh BASE_REF}")
summary() { [ -z "${GITHUB_STEP_SUMMARY:-}" ] || printf '%s\n' "$@" >> "$GITHUB_STEP_SUMMARY"; }
if [ "${#dirs[@]}" -eq 0 ]; then
  echo "validate: no submission folder changed"
  summary "### babelmerge validate" "" "No submission folder changed."
  exit 0
fi
echo "validate: ${dirs[*]}"
set +e
out="$(${BABELMERGE:-babelmerge} validate "${dirs[@]}" 2>&1)"
rc=$?
set -e
printf '%s\n' "$out"
while IFS= read -r line; do
  case "$line" in
    *" submission(s) checked, "*|"") ;;
    *) echo "::error file=${line%%:*}::${line}" ;;
  esac
done <<< "$out"
summary "### babelmerge validate" "" "Changed: ${dirs[*]}" "" '```' "$out" '```'
exit "$rc"
