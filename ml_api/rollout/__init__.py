"""Safe rollouts: shadow traffic, canary ramps and guardrails, and the engine that runs them."""
