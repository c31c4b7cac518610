#!/usr/bin/env bash
# DeepGen's test command (what CI runs and what the README tells developers to run):
#   1. pytest on tests/        fails on any failure, and when it collected no test (exit 5);
#   2. lit on lit_tests/       fails on any failure, and when it discovered no test.
# Both run even when the first fails; the exit status is non-zero if either failed.
# The last line is a total in the form "total: N passed, N failed, N skipped".
#
# Uses the `python` on PATH (activate the project's venv first), or $PYTHON.
# Extra arguments go to pytest, e.g. ./run_tests.sh -k doctor -x
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")"
PYTHON=${PYTHON:-python}
if ! command -v "$PYTHON" >/dev/null 2>&1; then
  echo "run_tests.sh: no '$PYTHON' on PATH (activate the venv or set PYTHON)" >&2
  exit 2
fi
if ! "$PYTHON" -c "import deepgen" >/dev/null 2>&1; then
  echo "run_tests.sh: '$PYTHON' cannot import deepgen: run 'pip install -e .' first" >&2
  exit 2
fi

REPORTS=$(mktemp -d "${TMPDIR:-/tmp}/deepgen-tests.XXXXXX")
trap 'rm -rf "$REPORTS"' EXIT

status=0

echo "=== pytest tests ==="
set +e
"$PYTHON" -m pytest tests -q --junitxml="$REPORTS/pytest.xml" "$@"
pytest_rc=$?
set -e
case $pytest_rc in
  0) ;;
  5) echo "run_tests.sh: FAILED: pytest collected no tests" >&2; status=1 ;;
  *) echo "run_tests.sh: FAILED: pytest exited with $pytest_rc" >&2; status=1 ;;
esac

echo
echo "=== lit lit_tests ==="
set +e
# The PyPI lit package has no __main__: run its entry point.
"$PYTHON" -c 'import sys; from lit.main import main; sys.argv[0] = "lit"; main()' \
  -v lit_tests --xunit-xml-output="$REPORTS/lit.xml"
lit_rc=$?
set -e
if [ "$lit_rc" -ne 0 ]; then
  echo "run_tests.sh: FAILED: lit exited with $lit_rc" >&2
  status=1
fi

# Count what ran from both JUnit reports; zero lit tests is a failure even if lit said 0.
set +e
"$PYTHON" - "$REPORTS/pytest.xml" "$REPORTS/lit.xml" <<'EOF'
import sys
import xml.etree.ElementTree as ET

totals = {"passed": 0, "failed": 0, "skipped": 0}
bad = False
for label, path in zip(("pytest", "lit"), sys.argv[1:]):
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError):
        print(f"{label}: no report (did not run)")
        bad = True
        continue
    suites = [root] if root.tag == "testsuite" else root.findall("testsuite")
    n = sum(int(s.get("tests", 0)) for s in suites)
    failed = sum(int(s.get("failures", 0)) + int(s.get("errors", 0)) for s in suites)
    skipped = sum(int(s.get("skipped", 0)) for s in suites)
    passed = n - failed - skipped
    print(f"{label}: {passed} passed, {failed} failed, {skipped} skipped")
    if n == 0 or passed == 0:
        print(f"run_tests.sh: FAILED: {label} ran no test", file=sys.stderr)
        bad = True
    for key, value in (("passed", passed), ("failed", failed), ("skipped", skipped)):
        totals[key] += value
print(f"total: {totals['passed']} passed, {totals['failed']} failed, {totals['skipped']} skipped")
sys.exit(1 if bad else 0)
EOF
count_rc=$?
set -e
if [ "$count_rc" -ne 0 ]; then
  status=1
fi

if [ "$status" -ne 0 ]; then
  echo "run_tests.sh: FAILED (pytest exit $pytest_rc, lit exit $lit_rc)" >&2
fi
exit "$status"
