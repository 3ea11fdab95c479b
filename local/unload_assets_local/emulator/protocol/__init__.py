"""The PostgreSQL wire protocol as the emulator speaks it: messages (`wire.py`), the client's own backend
session driven by the emulator while it runs a statement (`backend.py`), and that session as UNLOAD and
COPY see it (`session.py`)."""
