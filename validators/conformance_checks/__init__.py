"""The conformance suite's checks, one module per area; `validators.conformance` names and runs them."""
