"""The verifiable log service: append, sequencing, proofs, receipts."""
