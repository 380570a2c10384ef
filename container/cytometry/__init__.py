"""The cytometry pipeline's parts: FCS reading, compensation and scales, gating, statistics, QC, plots."""
