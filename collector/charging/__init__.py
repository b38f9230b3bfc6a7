"""From a node's sample to ledger postings: parsing, usage deltas, the ledger mapping, posting, batching, retention."""
