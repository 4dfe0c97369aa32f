"""Policy surgeries (catalog section 20): clipping, trust regions, and what changes a policy's update."""
