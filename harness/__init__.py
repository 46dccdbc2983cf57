"""kvmconf: conformance harness for Linux virtualization features."""
__version__ = "0.1.0"
