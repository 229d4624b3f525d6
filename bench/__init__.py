"""Benchmark suite: agentchat against its peers in one run (`python -m bench.run [--quick]`)."""
