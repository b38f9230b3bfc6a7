"""From standings to the state on every node: tiers, decisions, the planner, the decision log, notices."""
