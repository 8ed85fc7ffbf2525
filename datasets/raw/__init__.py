"""Builders for MegaMedical source datasets, reading the raw files a user downloaded (TFDS manual_dir)."""
