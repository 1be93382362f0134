"""End-to-end suites. This directory is on sys.path for them: e2e_checks.py holds the assertions
the kind suite (kind/) and the real-node suite (node/) share."""
