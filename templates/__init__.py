"""Jinja2 templates for the PDFs and emails (package data, so an installed ticketq finds them)."""
