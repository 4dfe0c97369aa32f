"""Knowledge distillation (catalog section 2) and policy distillation (section 20)."""
