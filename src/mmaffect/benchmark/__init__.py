"""Speed benchmarks that write a results file (targets live here, not in timed unit tests)."""
