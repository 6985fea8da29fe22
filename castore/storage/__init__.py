"""Files and digests: blobs, codecs, hashing, the store layout, durable writes, locks."""
