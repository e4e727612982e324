"""Test support shared by the test suite, benchmarks and tools (the model matrix)."""
