"""One client's connection: the relay to its own PostgreSQL backend (`client.py`, `relay.py`), and the
hand-over to the statements the emulator executes itself (`executor.py`)."""
