"""Developer tools, not product code: fault drills (`dqu faults`) and tiny-model builders for tests
and benchmarks. The pipeline stages never import this package."""
