"""Low-rank factorization surgeries (catalog section 28): weight matrices replaced by products of
smaller factors, on a fresh agent, at a step, or on a trained model (``rls.operate``)."""
