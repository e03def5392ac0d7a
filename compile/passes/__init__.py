"""Relax passes written for tinyasr, one per file; `tinyasr.compile.pipeline` orders them."""
