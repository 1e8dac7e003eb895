"""The maturity rules as pure functions (``maturity``) and the read model (``views``)."""
