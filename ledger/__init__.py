"""gpuledger: ledger."""
