"""`--remote`: verify, selftest and bench on the boxes a model ships to, over SSH (`fleet.py`), with the box's own
agent (`agent.py`), the system's OpenSSH client (`ssh.py`), the device install's wheels fetched here
(`device_install.py`) and files copied by sha256 (`sync.py`)."""
