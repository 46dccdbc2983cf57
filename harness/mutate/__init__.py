"""Mutation testing of the suite: one-spot kernel changes the suite should catch."""
