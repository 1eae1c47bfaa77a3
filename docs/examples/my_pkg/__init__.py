"""The outside package of the docs' "Your own network" example (docs/extending.md)."""
