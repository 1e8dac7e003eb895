"""Renderers and pages: to-do rows, wiki markup, storage format, Rally story text, the Rulebook
and the matrix heatmap. They take plain data and return text."""
