"""What the test suite and the benchmarks share.

Factories, a fake OpenAI-compatible model, a deployment harness and scratch databases.
"""
