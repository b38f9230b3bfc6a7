"""gpuledger: collector."""
