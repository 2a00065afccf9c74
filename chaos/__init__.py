"""`make chaos`: the randomized soak of the token lifecycle under faults (see chaos/soak.py)."""
