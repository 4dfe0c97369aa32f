"""Batch and data surgeries (catalog section 7): what each update trains on."""
