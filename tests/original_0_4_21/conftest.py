# 0.4.21's own tests and scripts are run in subprocesses, from a copy, by tests/test_original_suite.py and
# tests/test_original_examples.py: this test suite must not collect them itself.
collect_ignore_glob = ["*"]
