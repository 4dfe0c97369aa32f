"""Repair and recovery (catalog section 30): bad updates filtered or rolled back, networks
recalibrated or given back their plasticity."""
