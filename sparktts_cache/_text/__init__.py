"""Long text: splitting it into segments, and synthesising them through a cache."""
