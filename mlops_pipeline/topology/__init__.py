"""The production topology on one machine: its servers and the processes around them."""
