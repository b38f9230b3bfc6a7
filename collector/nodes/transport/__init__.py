"""How the controller reaches nodes: one contract (``abc``), SSH and local implementations."""
