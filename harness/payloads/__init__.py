"""Guest payloads: build them from guests/ and check them with pyelftools."""
