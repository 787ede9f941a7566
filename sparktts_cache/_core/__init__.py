"""The contract every backend shares: the Cache ABC, keys, entry formats, errors."""
