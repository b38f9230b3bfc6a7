"""gpuledger probe: what runs on a node (sample and the allow-listed node command). Python 3.8+."""
