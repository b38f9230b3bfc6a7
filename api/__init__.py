"""gpuledger: api."""
