"""The provider's agent: the data plane on the provider's machine (keeps the data,
answers computations). Depends on :mod:`ledger` (and later the SDK) only."""
