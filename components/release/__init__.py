"""The release step: every check first, then serving, TFLite and reports together."""
